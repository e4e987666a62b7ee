"""Every registered LM runtime (stages/runtimes/lm) on the tiny model, through the interface
alone: its float build's logits agree with PyTorch's on the same weights, its KV-cache steps
agree with a full recompute, a quantized build loads and scores, and the shared meter and
scorer drive it. A runtime added to the registry is tested here without a new test."""
from __future__ import annotations

import json

import numpy as np
import pytest

from stages.core.errors import PipelineError
from stages.runtimes import lm

# Stated tolerance of a float build against PyTorch fp32: max |logit difference|. The runtimes
# reorder float32 sums (fused attention, other GEMM kernels); f16 storage is llama.cpp's float.
FLOAT = {"pytorch": ("fp32", 1e-4), "ort_genai": ("fp32", 1e-3), "llamacpp": ("f32", 1e-2),
         "openvino": ("fp32", 1e-3)}
QUANTIZED = {"pytorch": "bf16", "ort_genai": "int4", "llamacpp": "q4_0", "openvino": "int4"}
ARCHS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "gemma3": "Gemma3ForCausalLM"}
# Fixture limits, not runtime limits: the tiny Qwen2 borrows SmolLM2's tokenizer, whose
# pre-tokenizer llama.cpp's converter recognises only for a Llama model.
FIXTURE_GAPS = {("qwen2", "llamacpp"): "llama.cpp's converter ties SmolLM2's BPE pre-tokenizer to Llama"}
IDS = [1, 504, 2443, 314, 253, 3474, 30, 378, 1015, 282, 3240, 28, 1062, 2143, 314, 6035]


def test_every_runtime_in_the_registry_has_a_float_and_a_quantized_case():
    assert set(lm.names()) == set(FLOAT) == set(QUANTIZED)
    for name in lm.names():
        rt = lm.get(name)
        assert rt.name == name and FLOAT[name][0] in rt.precisions and QUANTIZED[name] in rt.precisions


def test_unknown_runtime_is_one_line_listing_the_known():
    with pytest.raises(PipelineError, match=r"unknown LM runtime 'onnx' \(known: llamacpp, "):
        lm.get("onnx")


@pytest.fixture(scope="module")
def sources(tiny_hf, tiny_qwen2, tiny_gemma3):
    """The tiny models by architecture: Llama (SmolLM2's) and a non-Llama one, Qwen2."""
    return {"llama": tiny_hf, "qwen2": tiny_qwen2, "gemma3": tiny_gemma3}


@pytest.fixture(scope="module")
def references(sources):
    return {arch: lm.get("pytorch").open(src, 2).logits(IDS) for arch, src in sources.items()}


@pytest.fixture(scope="module")
def builds(sources, tmp_path_factory):
    """(architecture, runtime, precision) -> its artifact folder, built once for the module."""
    root, made = tmp_path_factory.mktemp("lm-runtimes"), {}

    def get(arch: str, name: str, precision: str):
        if (arch, name, precision) not in made:
            rt = lm.get(name)
            try:
                rt.require()
            except PipelineError as exc:
                pytest.skip(str(exc))
            out = root / f"{arch}-{name}-{precision}"
            rt.build(sources[arch], out, {"precision": precision})
            made[arch, name, precision] = out
        return made[arch, name, precision]
    return get


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("name", sorted(FLOAT))
def test_float_build_matches_pytorch_and_its_cache_matches_a_recompute(name, arch, builds, references):
    precision, tol = FLOAT[name]
    rt, reference = lm.get(name), references[arch]
    if (arch, name) in FIXTURE_GAPS:
        pytest.skip(FIXTURE_GAPS[arch, name])
    if ARCHS[arch] in rt.unsupported:   # declared, and refused before any work
        with pytest.raises(PipelineError, match=f"does not support {ARCHS[arch]}"):
            builds(arch, name, precision)
        return
    folder = builds(arch, name, precision)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    session = rt.open(folder, 2)
    got = session.logits(IDS)
    assert got.shape == reference.shape and got.dtype == np.float32
    assert np.abs(got - reference).max() < tol
    # generation through the runtime's own KV cache: a prompt, then one token at a time
    session.reset(len(IDS))
    steps = [session.step(IDS[:8])] + [session.step([t]) for t in IDS[8:]]
    assert np.abs(np.stack(steps) - reference[7:]).max() < tol
    assert 0 < rt.weight_bytes_per_token(folder) <= sum(
        f.stat().st_size for f in folder.rglob("*") if f.is_file())


@pytest.mark.parametrize("name", sorted(QUANTIZED))
def test_quantized_build_loads_and_scores(name, builds, references):
    from stages.meters import lm_latency
    from stages.tasks.scoring import score_session

    rt, reference = lm.get(name), references["llama"]
    folder = builds("llama", name, QUANTIZED[name])
    session = rt.open(folder, 2)
    got = session.logits(IDS)
    assert got.shape == reference.shape and np.isfinite(got).all()
    # a quantized model of the same weights: its logits follow the float ones, not noise
    assert np.corrcoef(got.ravel(), reference.ravel())[0, 1] > 0.9
    assert not np.array_equal(got, reference)
    scores = score_session(session, [(IDS[:-1], 2, IDS[-2:])], k=5)
    assert set(scores[0]) == {"loglik", "greedy", "topk_first", "topk_word"} and scores[0]["loglik"] < 0
    timing = rt.open(folder, 2, full_logits=False)
    out = lm_latency.measure(timing, IDS * 4, prefill_tokens=48, decode_tokens=4, repeats=1)
    assert out["ttft_ms"] > 0 and out["tpot_p90_ms"] >= out["tpot_ms"] > 0
    assert out["prefill_tokens"] == 48


@pytest.mark.parametrize("name", sorted(FLOAT))
def test_a_truncated_artifact_is_one_line_naming_it(name, builds, tmp_path):
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(builds("llama", name, FLOAT[name][0]), folder)
    biggest = max((f for f in folder.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    with pytest.raises(PipelineError, match=f"{folder} cannot be opened by the {name} runtime") as exc:
        lm.get(name).open(folder, 2).logits(IDS)
    assert "\n" not in str(exc.value)
    with pytest.raises(PipelineError, match=f"no {name} model folder at"):
        lm.get(name).open(tmp_path / "missing", 2)


def test_check_refuses_unsupported_sources_before_any_work(tiny_hf, tmp_path):
    src = tmp_path / "bert"
    src.mkdir()
    cfg = json.loads((tiny_hf / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(PipelineError, match="ort_genai runtime does not support BertForMaskedLM"):
        lm.get("ort_genai").build(src, tmp_path / "out", {"precision": "int4"})
    (src / "config.json").write_text(json.dumps({**cfg, "quantization_config": {
        "quant_method": "gptq", "bits": 4}}))
    with pytest.raises(PipelineError, match="llamacpp runtime cannot build a gptq-quantized"):
        lm.get("llamacpp").build(src, tmp_path / "out", {"precision": "q4_0"})
    with pytest.raises(PipelineError, match="unknown knob 'blok_size' \(did you mean 'block_size'\?\)"):
        lm.get("ort_genai").build(tiny_hf, tmp_path / "out", {"precision": "int4", "blok_size": 32})
    with pytest.raises(PipelineError, match="openvino: precision: Input should be 'fp32', 'int8' or 'int4', got 'int3'"):
        lm.get("openvino").build(tiny_hf, tmp_path / "out", {"precision": "int3"})
    assert not (tmp_path / "out").exists()
