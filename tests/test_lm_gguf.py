"""The llama.cpp runtime (stages/runtimes/lm/llamacpp.py, its helpers stages/runtimes/llamacpp_lm.py
and stages/methods/gguf_build.py): knob errors, GGUF header arithmetic (bytes read per token,
tensor types), missing packages, and a tiny random Llama built by lm_build with llama.cpp's own
converter and quantizer: the build records the tensor types it made, and llama.cpp scores it as
PyTorch scores the source (a broken conversion fails)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from stages.core.errors import PipelineError
from stages.models import lm_record
from stages.runtimes import lm

RT = lm.get("llamacpp")


@pytest.mark.parametrize("knobs, message", [
    ({"precision": "q3_k"}, "llamacpp: precision: Input should be 'f32', 'f16', 'q8_0', 'q4_0', 'q4_1' or 'q4_k_m', got 'q3_k'"),
    ({"precision": "packaged"}, "llamacpp: precision: Input should be"),
    ({"threads": 0}, "llamacpp: threads: Input should be greater than or equal to 1"),
    ({"thread": 2}, "llamacpp: unknown knob 'thread' (did you mean 'threads'?)"),
])
def test_bad_llamacpp_knobs_are_one_line(knobs, message):
    with pytest.raises(PipelineError) as exc:
        RT.validate(knobs)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_gguf_type_given_to_another_runtime_is_named_by_check_params(tmp_path):
    from tests.test_lm_methods import M, check_chains

    with pytest.raises(PipelineError, match=r"variants.v: precision: Input should be 'fp32', 'int8' or "
                                            r"'int4', got 'q4_0'"):
        check_chains(tmp_path, {}, {"v": {"node": M, "runtime": "ort_genai", "precision": "q4_0"}})


def test_precisions_map_to_bits_and_a_record_names_its_variant():
    assert RT.precisions == {"f32": 32, "f16": 16, "q8_0": 8, "q4_0": 4, "q4_1": 4, "q4_k_m": 4}
    assert RT.validate({})["precision"] == "f16"   # the default: the converter's f16
    record = {"model": "m", "chain": [], "runtime": "llamacpp", "knobs": RT.validate({"precision": "q4_k_m"})}
    assert lm_record.name(record) == "m · base · llamacpp q4_k_m"


def test_an_unknown_gguf_type_is_one_line_before_any_work(tmp_path):
    from stages.methods import gguf_build

    with pytest.raises(PipelineError, match="unknown GGUF variant 'q5_0'"):
        gguf_build.build("q5_0", tmp_path, tmp_path / "x.gguf", 1)
    assert not (tmp_path / "x.gguf").exists()


def write_gguf(path: Path, tied: bool) -> None:
    """A header-only-valid GGUF: a 10x4 embedding (+ an 10x4 output when untied) and a 4x4 layer."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_token_list([f"t{i}".encode() for i in range(10)])
    w.add_tensor("token_embd.weight", np.ones((10, 4), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.ones((4, 4), dtype=np.float16))
    if not tied:
        w.add_tensor("output.weight", np.ones((10, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_bytes_per_token_reads_a_tied_table_whole_and_an_untied_one_by_row(tmp_path):
    from stages.runtimes import llamacpp_lm as R

    write_gguf(tmp_path / "tied.gguf", tied=True)
    write_gguf(tmp_path / "untied.gguf", tied=False)
    assert R.weight_bytes_per_token(tmp_path / "tied.gguf") == 10 * 4 * 4 + 4 * 4 * 2
    assert R.weight_bytes_per_token(tmp_path / "untied.gguf") == 4 * 4 + 4 * 4 * 2 + 10 * 4 * 4
    assert R.type_counts(tmp_path / "untied.gguf") == {"F16": 1, "F32": 2}
    assert R.tensors(tmp_path / "untied.gguf")["blk.0.attn_q.weight"] == ("F16", 4 * 4 * 2, 4)
    assert R.vocab_size(tmp_path / "tied.gguf") == 10
    (tmp_path / "artifact").mkdir()   # the plugin reads the artifact folder's model.gguf
    shutil.copy(tmp_path / "untied.gguf", tmp_path / "artifact" / "model.gguf")
    assert RT.weight_bytes_per_token(tmp_path / "artifact") == R.weight_bytes_per_token(tmp_path / "untied.gguf")


def test_a_gguf_of_another_vocabulary_than_its_config_is_refused(tmp_path):
    (tmp_path / "artifact").mkdir()
    write_gguf(tmp_path / "artifact" / "model.gguf", tied=True)
    (tmp_path / "artifact" / "config.json").write_text(json.dumps({"vocab_size": 49152}))
    pytest.importorskip("llama_cpp")
    with pytest.raises(PipelineError, match="model.gguf has 10 tokens, its config.json 49152: not the same model"):
        RT.open(tmp_path / "artifact", 1)


def test_missing_llama_cpp_names_the_package_and_setup(monkeypatch):
    from stages.runtimes import llamacpp_lm as R

    monkeypatch.setitem(sys.modules, "llama_cpp", None)   # `import llama_cpp` raises ImportError
    with pytest.raises(PipelineError) as exc:
        R.require()
    assert "'llama-cpp-python'" in str(exc.value) and "bash setup.sh" in str(exc.value)
    with pytest.raises(PipelineError, match="the llamacpp runtime needs the Python module 'llama_cpp'.*setup.sh"):
        RT.require()


@pytest.fixture(scope="module")
def builds(tiny_hf, tmp_path_factory) -> dict:
    """tiny_hf as a source node, built by lm_build for llama.cpp at f32 and q8_0 (variants)."""
    pytest.importorskip("llama_cpp")
    from stages.entry import lm_build
    from stages.methods import gguf_build
    from tests.test_lm_models import write_params

    try:
        gguf_build.converter()
    except PipelineError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("gguf")
    node = root / "tiny"
    shutil.copytree(tiny_hf, node)
    lm_record.write(node, {"model": "tiny", "architecture": "LlamaForCausalLM", "chain": []})
    variants = {f"tiny-{p}": {"node": "tiny", "runtime": "llamacpp", "precision": p} for p in ("f32", "q8_0")}
    params = write_params(root, variants=variants, runtimes={"llamacpp": {"threads": 1}})
    out = {}
    for key, v in variants.items():
        lm_build.main(["--node", str(node), "--runtime", "llamacpp", "--variant", key, "--out", str(root / key),
                       "--metrics", str(root / f"{key}.json"), "--params", str(params)])
        out[v["precision"]] = (root / key, json.loads((root / f"{key}.json").read_text()))
    return out


def test_the_build_records_the_tensor_types_it_made(builds):
    from stages.runtimes import llamacpp_lm as R

    for precision, (folder, m) in builds.items():
        assert m["record"]["knobs"] == {"precision": precision, "threads": 1}   # variant over runtime defaults
        assert m["record"]["versions"]["llama-cpp-python"] and lm_record.read(folder) == m["record"]
        assert m["build"]["tensor_types"] == R.type_counts(folder / "model.gguf")
        assert (folder / "tokenizer.json").is_file() and (folder / "config.json").is_file()
    f32, q8 = builds["f32"][1]["build"], R.tensors(builds["q8_0"][0] / "model.gguf")
    assert list(f32["tensor_types"]) == ["F32"] and f32["head_type"] == "F32"
    # the quantizer also quantizes the tied embedding / LM head table (one table: no output.weight)
    assert "output.weight" not in q8 and q8["token_embd.weight"][0] == "Q8_0" == builds["q8_0"][1]["build"]["head_type"]
    assert q8["blk.0.ffn_down.weight"][0] == "Q8_0"


def test_tiny_llama_scores_the_same_in_llama_cpp_and_pytorch(builds, tiny_hf):
    import torch
    import transformers

    from stages.tasks import lambada as S
    from stages.tasks.scoring import score_session

    rng = np.random.default_rng(0)
    reqs = [[int(t) for t in rng.integers(3, 49152, n)] for n in (7, 19, 40)]
    reqs = [(ids, 2, ids[-1:] + [int(rng.integers(3, 49152))]) for ids in reqs]
    model = transformers.LlamaForCausalLM.from_pretrained(tiny_hf).eval()
    with torch.inference_mode():
        want = [S.score_continuation(model(torch.tensor([ids])).logits[0, len(ids) - n:], c, 5)
                for ids, n, c in reqs]
    for name, tol in (("f32", 1e-3), ("q8_0", 0.05)):
        got = score_session(RT.open(builds[name][0], 1), reqs, 5)
        for g, w in zip(got, want):
            assert g["loglik"] == pytest.approx(w["loglik"], abs=tol * abs(w["loglik"])), name
        if name == "f32":
            assert [g["greedy"] for g in got] == [w["greedy"] for w in want]


def snap_to_q4_1(w):
    """w on a Q4_1 grid: per 32-column block, float16 step d and minimum m, 16 levels d*q + m
    (what SmolLM2's packaged base is, dequantized)."""
    import torch

    blocks = w.reshape(-1, 32)
    lo, hi = blocks.min(1, keepdim=True).values, blocks.max(1, keepdim=True).values
    d, m = ((hi - lo) / 15).half().float(), lo.half().float()
    q = torch.clamp(torch.round((blocks - m) / d), 0, 15)
    q[:, 0], q[:, 1] = 0, 15   # both ends used, as a block quantized from data uses them
    return (d * q + m).reshape(w.shape)


def test_q4_1_brings_a_q4_1_dequantized_model_back_onto_its_own_grid(tiny_hf, tmp_path):
    """The llamacpp q4_1 variant of a base that was dequantized from Q4_1 holds that base's own
    weights (the int4 frontier's finding for SmolLM2); q4_0, without a minimum, cannot."""
    pytest.importorskip("llama_cpp")
    import gguf
    import torch
    import transformers

    from stages.methods import gguf_build

    try:
        gguf_build.converter()
    except PipelineError as exc:
        pytest.skip(str(exc))
    model = transformers.LlamaForCausalLM.from_pretrained(tiny_hf)
    names = {"blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
             "blk.1.attn_v.weight": "model.layers.1.self_attn.v_proj.weight"}
    with torch.no_grad():
        for layer in model.model.layers:
            for lin in (layer.mlp.down_proj, layer.mlp.up_proj, layer.mlp.gate_proj, layer.self_attn.v_proj,
                        layer.self_attn.o_proj, layer.self_attn.q_proj, layer.self_attn.k_proj):
                lin.weight.copy_(snap_to_q4_1(lin.weight))
    base = tmp_path / "base"
    model.save_pretrained(base)
    for f in tiny_hf.glob("tokenizer*"):
        shutil.copy(f, base)
    want = {k: v.numpy() for k, v in model.state_dict().items()}
    errors = {}
    for kind in ("q4_1", "q4_0"):
        gguf_build.build(kind, base, tmp_path / f"{kind}.gguf", 1)
        tensors = {t.name: t for t in gguf.GGUFReader(tmp_path / f"{kind}.gguf").tensors}
        errors[kind] = max(float(np.abs(gguf.quants.dequantize(tensors[g].data, tensors[g].tensor_type)
                                        - want[h]).max()) for g, h in names.items())
        assert tensors["blk.0.ffn_down.weight"].tensor_type.name == kind.upper()
    scale = max(float(np.abs(want[h]).max()) for h in names.values())
    assert errors["q4_1"] < 1e-6 * scale, errors        # the same weights, to float rounding
    assert errors["q4_0"] > 1e-3 * scale, errors        # a symmetric grid moves them


def test_the_quantizer_shows_warnings_not_a_line_per_tensor(tiny_hf, tmp_path, capfd, caplog):
    pytest.importorskip("llama_cpp")
    from stages.methods import gguf_build
    from stages.runtimes.lm.llamacpp import warnings_only

    try:
        gguf_build.convert(tiny_hf, tmp_path / "f32.gguf", "f32")
    except PipelineError as exc:
        pytest.skip(str(exc))
    capfd.readouterr()
    # without the block, llama-cpp-python lets every line through (INFO too, before a Llama() was
    # opened; the per-tensor fallback warnings always)
    with warnings_only():
        gguf_build.quantize(tmp_path / "f32.gguf", tmp_path / "b.gguf", "q4_k_m", 1)
    assert "blk.0" not in capfd.readouterr().err
    # 64-wide rows are no K-quant super-block: one warning per tensor, summed up in one line
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("llama.cpp: ")]
    assert len(summary) == 1 and "fallback quantization" in summary[0], summary
