"""The ONNX Runtime GenAI runtime: params errors, the gptq_v2 -> v1 zero-point conversion,
missing packages, variant naming, the bandwidth bound, and (e2e) a tiny random Llama built
by the genai builder and scored through onnxruntime equals its PyTorch scores."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.core.errors import PipelineError
from stages.entry.lm_eval_ort import describe, discover
from stages.meters import bandwidth
from stages.methods import gptq_v1
from stages.schema import params as P
from tests.ort_fixtures import tiny_llama

ROOT = Path(__file__).resolve().parents[1]
GOOD = yaml.safe_load((ROOT / "params.yaml").read_text())


def variants(v) -> dict:
    raw = copy.deepcopy(GOOD)
    raw["lm_runtimes"]["variants"] = v
    return raw


@pytest.mark.parametrize("value, message", [
    (["llamacpp-q4_0"], "unknown runtime 'llamacpp' in variant 'llamacpp-q4_0' (known: ort; llama.cpp GGUF types go in"),
    (["ort-q4_k_m"], "runtime 'ort' does not support precision 'q4_k_m'"),
    (["ort-int4", "ort-int4"], "lists a variant twice"),
])
def test_unknown_runtime_or_unsupported_pair_is_one_line(value, message):
    with pytest.raises(PipelineError, match="lm_runtimes") as exc:
        P.validate(variants(value))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_scalar_variant_and_scalar_quant_bits_are_accepted():
    raw = variants("ort-gptq")
    raw["quant"]["bits"] = 4           # dvc exp run -S quant.bits=4
    p = P.validate(raw)
    assert p.lm_runtimes.variants == ["ort-gptq"] and p.quant.bits == [4]


def test_unsupported_gptq_width_is_a_clear_error(tmp_path):
    from stages.entry.lm_build_ort import build_gptq

    with pytest.raises(PipelineError, match=r"packs GPTQ widths \(8, 4, 2\), not \[3\]"):
        build_gptq(tmp_path, tmp_path / "out", [4, 3], {}, None)


def test_missing_package_names_pip_package_and_setup(monkeypatch):
    import importlib

    from stages.runtimes import ort_genai_lm as R

    def fail(name):
        raise ImportError(f"No module named '{name}'")
    monkeypatch.setattr(importlib, "import_module", fail)
    with pytest.raises(PipelineError) as exc:
        R.require()
    assert "'onnxruntime-genai'" in str(exc.value) and "bash setup.sh" in str(exc.value)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_qzeros_shift_is_per_field_and_reversible(bits):
    rng = np.random.default_rng(bits)
    per = 32 // bits
    fields = rng.integers(0, 2 ** bits, size=(3, 4 * per))
    packed = np.zeros((3, 4), dtype=np.uint64)
    for j in range(fields.shape[1]):
        packed[:, j // per] |= fields[:, j].astype(np.uint64) << np.uint64((j % per) * bits)
    packed = packed.astype(np.uint32).view(np.int32)
    down = gptq_v1.shift_qzeros(packed, bits, -1)
    for j in range(fields.shape[1]):
        got = (down.view(np.uint32)[:, j // per] >> ((j % per) * bits)) & (2 ** bits - 1)
        assert (got == (fields[:, j] - 1) % 2 ** bits).all()
    assert (gptq_v1.shift_qzeros(down, bits, 1) == packed).all()


def test_variant_names_and_discovery(tmp_path):
    assert describe("ort-fp32") == {"runtime": "onnxruntime", "method": "none", "bits": 32}
    assert describe("ort-int4")["method"] == "ort-int4"
    assert describe("ort-gptq-int8") == {"runtime": "onnxruntime", "method": "gptq", "bits": 8}
    for b in (4, 8):
        (tmp_path / f"int{b}").mkdir()
        (tmp_path / f"int{b}" / "model.onnx").write_bytes(b"")
    assert list(discover(tmp_path, "ort-gptq")) == ["ort-gptq-int8", "ort-gptq-int4"]
    with pytest.raises(PipelineError, match="no model.onnx"):
        discover(tmp_path / "int4" / "missing", "ort-int4")


def test_bandwidth_fraction_and_triad_measure():
    assert bandwidth.fraction(50.0, 10.0, 100_000_000) == pytest.approx(0.5)
    assert bandwidth.triad_gb_s(mb=8, repeats=3) > 0.1


@pytest.mark.e2e
def test_tiny_llama_scores_the_same_in_onnxruntime_and_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from stages.methods.ort_build import run_builder
    from stages.runtimes import ort_genai_lm as R
    from stages.tasks import lambada as S

    tok_dir = ROOT / "models" / "llm" / "base"   # the builder copies a tokenizer beside the model
    if not (tok_dir / "tokenizer.json").is_file():
        pytest.skip("models/llm/base not checked out (dvc pull / dvc repro lm_export)")
    model = tiny_llama(tmp_path / "hf", tok_dir)
    run_builder(tmp_path / "hf", tmp_path / "ort", "fp32",
                {"block_size": 32, "accuracy_level": 4, "quantize_head": True})
    rng = np.random.default_rng(0)
    reqs = [(list(rng.integers(3, 49152, n)), 2, None) for n in (7, 19, 40)]
    reqs = [(ids, n, ids[-n + 1:] + [int(rng.integers(3, 49152))]) for ids, n, _ in reqs]
    got = R.score_all(tmp_path / "ort", reqs, 5, 1)
    with torch.inference_mode():
        want = [S.score_continuation(model(torch.tensor([ids])).logits[0, len(ids) - n:], c, 5)
                for ids, n, c in reqs]
    for g, w in zip(got, want):
        assert g["loglik"] == pytest.approx(w["loglik"], abs=1e-3)
        assert (g["greedy"], g["topk_word"]) == (w["greedy"], w["topk_word"])
    # the graph must not carry this project's git commit (the builder stamps `git rev-parse HEAD`
    # run beside its package, i.e. this repo when the venv lives in it): else every commit
    # would change the model's bytes
    import subprocess

    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    onnx = pytest.importorskip("onnx")
    stamp = onnx.load(str(tmp_path / "ort" / "model.onnx"), load_external_data=False).producer_version
    assert stamp.startswith("0.") and (not head or head not in stamp), stamp
