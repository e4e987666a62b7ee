"""GPTQModel 7.6 AWQ faults that stages/methods/awq.py works around (README "AWQ"): with
calibration passages of different lengths its AWQProcessor keeps only the last one, and then
q/k/v (gate/up) share one captured input that apply_scale divides once per layer (seconds)."""
from __future__ import annotations

import contextlib

import pytest

from stages.methods import awq as awq_method
from stages.runtimes import torch_lm as R
from tests.test_lm_awq import awq, mha  # noqa: F401


def test_awq_keeps_only_full_length_passages():
    cut = [{"input_ids": [list(range(n))]} for n in (32, 31, 32, 5)]
    assert [len(c["input_ids"][0]) for c in awq_method.uniform(cut, 32)] == [32, 32]


@pytest.mark.parametrize("patched", [True, False])
def test_unaliased_divides_a_shared_input_feature_once_per_layer(mha, patched):
    """GPTQModel 7.6 captures one tensor for q/k/v when it keeps its last batch; its apply_scale
    divides that tensor once per layer (x/s^3 for v_proj). unaliased() gives each its own."""
    import torch
    from gptqmodel.looper import awq_processor as AP
    from gptqmodel.quantization.awq.quantize import scale
    layer = R.load(mha, "cpu")[0].model.layers[0]
    x, s = torch.randn(1, 5, 64), torch.rand(64) + 1.5
    names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    feats = dict.fromkeys(names, x.clone())   # one tensor, as GPTQModel's latest-batch capture
    with awq_method.unaliased() if patched else contextlib.nullcontext():
        AP.apply_scale(layer, [("input_layernorm", names, s, None)], input_feat_dict=feats)
    want = [x / s, x / s, x / s] if patched else [x / s ** 3] * 3
    assert all(torch.allclose(feats[n], w) for n, w in zip(names, want))
    assert AP.apply_scale is scale.apply_scale   # the library's own, restored


def test_awq_searches_every_full_passage_and_each_layer_on_its_own_scaled_input(mha, tmp_path, monkeypatch):
    """GPTQModel 7.6 keeps only the last calibration batch when lengths differ, and q/k/v (gate/up)
    share one input tensor that apply_scale divides once per layer. With the workarounds, every
    layer's features after scaling are its own inputs x divided by its scales once, over all
    full-length passages."""
    from gptqmodel.looper import awq_processor as AP
    original, seen = AP.apply_scale, []

    def checked(module, scales_list, input_feat_dict=None):
        before = {k: v.float().clone() for k, v in input_feat_dict.items() if v.numel()}
        out = original(module, scales_list, input_feat_dict=input_feat_dict)
        for _, names, scales, _ in scales_list:
            for n in names:
                want = before[n] / scales.float().view(1, -1)
                got = input_feat_dict[n].float()
                seen.append((n, got.shape[:2], ((got - want).norm() / want.norm()).item()))
        return out

    monkeypatch.setattr(AP, "apply_scale", checked)
    _, metrics = awq(mha, tmp_path)
    passages = metrics["step"]["calib_passages"]
    assert passages == 8 and len(seen) == 2 * 7   # 2 layers x 7 linears
    assert {shape for _, shape, _ in seen} == {(passages, 26)}
    assert max(err for _, _, err in seen) < 1e-2, seen   # bfloat16 rounding; x/s^3 is far off
