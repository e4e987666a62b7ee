"""Every registered compression method (stages/methods/lm) on tiny models of three
architectures, through the interface alone: its output loads in the PyTorch runtime and scores,
and it did what it says (quantized to its width, pruned to its sparsity, dropped its layers).
A method added to the registry is tested here without a new test."""
from __future__ import annotations

import json

import numpy as np
import pytest

from stages.core.errors import PipelineError
from stages.methods import lm as methods
from stages.runtimes import lm as runtimes

# Small, fast knobs for the tiny models; each method's own defaults fill in the rest.
KNOBS = {"gptq": {"bits": 4, "calib_size": 8, "calib_seq_len": 32},
         "rtn": {"bits": 4},
         "awq": {"bits": 4, "calib_size": 8, "calib_seq_len": 32},
         "prune": {"sparsity": 0.5},
         "wanda": {"sparsity": 0.5, "calib_size": 8, "calib_seq_len": 32},
         "sparsegpt": {"pattern": "2:4", "calib_size": 8, "calib_seq_len": 32, "block_size": 32},
         "distill": {"steps": 2, "batch_size": 2, "seq_len": 16}}
IDS = [1, 504, 2443, 314, 253, 3474, 30, 378, 1015, 282]


@pytest.fixture(scope="module")
def calibration():
    words = "the quick brown fox jumps over a lazy dog while seven small birds sing in the tall old tree".split()
    return [" ".join(words[i % 7:] + words[:i % 7]) * 3 for i in range(16)]


@pytest.fixture(scope="module")
def sources(tiny_hf, tiny_qwen2, tiny_gemma3):
    return {"llama": tiny_hf, "qwen2": tiny_qwen2, "gemma3": tiny_gemma3}


@pytest.fixture(scope="module")
def wide(tiny_hf, tmp_path_factory):
    """tiny_hf with 4 key/value heads: every projection 64 wide, as AWQ's clip search needs
    (it refuses tiny_hf's 32-wide k/v in one line: tests/test_lm_awq.py)."""
    import shutil

    import torch
    import transformers

    folder = tmp_path_factory.mktemp("wide") / "hf"
    cfg = transformers.LlamaConfig.from_pretrained(tiny_hf)
    cfg.num_key_value_heads = 4
    torch.manual_seed(3)
    transformers.LlamaForCausalLM(cfg).eval().save_pretrained(folder)
    for f in tiny_hf.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy2(f, folder / f.name)
    return folder


def test_every_method_in_the_registry_has_a_case():
    assert set(methods.names()) == set(KNOBS)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
@pytest.mark.parametrize("name", sorted(KNOBS))
def test_method_output_loads_and_scores(name, arch, sources, wide, calibration, tmp_path):
    if name == "awq" and arch != "llama":
        pytest.skip("AWQ needs 64-wide projections: one (wider) Llama here")
    method, src = methods.get(name), wide if name == "awq" else sources[arch]
    out = tmp_path / "out"
    info = method.apply(src, out, KNOBS[name], calibration, teacher=src)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["_name_or_path"].endswith(f"-{name}") and "/" not in cfg["_name_or_path"]   # no local path
    if method.quantizes:
        assert cfg["quantization_config"]["bits"] == KNOBS[name]["bits"] == info["bits"]
    if name in ("prune", "wanda", "sparsegpt"):
        assert info["sparsity"] == pytest.approx(0.5, abs=0.01)
    if name == "distill":
        assert info["layers"] == -(-json.loads((src / "config.json").read_text())["num_hidden_layers"] // 2)
        assert len(info["losses"]) == KNOBS[name]["steps"] and all(np.isfinite(info["losses"]))
    logits = runtimes.get("pytorch").open(out, 2).logits(IDS)
    assert logits.shape == (len(IDS), 49152) and np.isfinite(logits).all()


def test_refusals_come_before_any_work(tiny_hf, tmp_path, calibration):
    with pytest.raises(PipelineError, match="unknown LM compression method 'gtpq'"):
        methods.get("gtpq")
    with pytest.raises(PipelineError, match="prune: sparsity: Input should be less than 1, got 1.5"):
        methods.get("prune").apply(tiny_hf, tmp_path / "o", {"sparsity": 1.5})
    with pytest.raises(PipelineError, match="unknown knob 'group_sise' \(did you mean 'group_size'\?\)"):
        methods.get("gptq").apply(tiny_hf, tmp_path / "o", {"group_sise": 32}, calibration)
    with pytest.raises(PipelineError, match="gptq needs calibration passages"):
        methods.get("gptq").apply(tiny_hf, tmp_path / "o", {})
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    cfg = json.loads((tiny_hf / "config.json").read_text())
    (narrow / "config.json").write_text(json.dumps({**cfg, "num_key_value_heads": 1}))   # k/v: 16 wide
    for name in ("gptq", "rtn"):
        with pytest.raises(PipelineError, match=f"{name}: GPTQModel packs output widths in multiples of 32"):
            methods.get(name).apply(narrow, tmp_path / "o", {}, calibration)
    with pytest.raises(PipelineError, match="calib_size=99 exceeds the 16"):
        methods.get("gptq").apply(tiny_hf, tmp_path / "o", {"calib_size": 99}, calibration)
    quantized = tmp_path / "q"
    quantized.mkdir()
    (quantized / "config.json").write_text(json.dumps({"quantization_config": {"bits": 4}}))
    with pytest.raises(PipelineError, match="already quantized; a quantizer ends a chain"):
        methods.get("prune").apply(quantized, tmp_path / "o", {})
    assert not (tmp_path / "o").exists()
