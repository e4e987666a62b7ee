"""The ONNX Runtime GenAI runtime (stages/runtimes/lm/ort_genai.py, its helpers
stages/runtimes/ort_genai_lm.py and stages/methods/gptq_v1.py): knob and source errors before any
work, the gptq_v2 -> v1 zero-point conversion, missing packages and the bandwidth bound. Its
builds are tested in tests/test_lm_runtime_conformance.py (float and int4) and
tests/test_lm_ort_head.py (GPTQ)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from stages.core.errors import PipelineError
from stages.meters import bandwidth
from stages.methods import gptq_v1
from stages.runtimes import lm

RT = lm.get("ort_genai")


@pytest.mark.parametrize("knobs, message", [
    ({"precision": "q4_k_m"}, "ort_genai: precision: Input should be 'fp32', 'int8' or 'int4', got 'q4_k_m'"),
    ({"block_size": 48}, "ort_genai: block_size: Input should be 16, 32, 64, 128 or 256, got 48"),
    ({"accuracy_level": 5}, "ort_genai: accuracy_level: Input should be 0, 1, 2, 3 or 4, got 5"),
    ({"gptq_head": "int2"}, "ort_genai: gptq_head: Input should be 'fp32', 'int8' or 'int4', got 'int2'"),
    ({"quantize_heads": False}, "ort_genai: unknown knob 'quantize_heads' (did you mean 'quantize_head'?)"),
])
def test_bad_ort_knobs_are_one_line(knobs, message):
    with pytest.raises(PipelineError) as exc:
        RT.validate(knobs)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_an_unknown_runtime_in_a_variant_is_one_line_naming_the_known(tmp_path):
    from tests.test_lm_methods import M, check_chains

    with pytest.raises(PipelineError, match=r"unknown LM runtime 'ort' \(known: llamacpp, openvino, "
                                            r"ort_genai, pytorch\)"):
        check_chains(tmp_path, {}, {"v": {"node": M, "runtime": "ort"}})


@pytest.mark.parametrize("qc, message", [
    ({"quant_method": "gptq", "bits": 3}, r"the onnxruntime-genai builder packs GPTQ widths \(8, 4, 2\), not 3"),
    ({"quant_method": "awq", "bits": 4}, "the ort_genai runtime cannot build a awq-quantized checkpoint"),
])
def test_a_quantized_source_it_cannot_build_is_refused_before_any_work(tiny_hf, tmp_path, qc, message):
    src = tmp_path / "src"
    src.mkdir()
    cfg = json.loads((tiny_hf / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "quantization_config": qc}))
    with pytest.raises(PipelineError, match=message):
        RT.build(src, tmp_path / "out", {})
    assert not (tmp_path / "out").exists()


def test_missing_package_names_pip_package_and_setup(monkeypatch):
    from stages.runtimes import ort_genai_lm as R

    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)   # `import` raises ImportError
    with pytest.raises(PipelineError) as exc:
        R.require()
    assert "'onnxruntime-genai'" in str(exc.value) and "bash setup.sh" in str(exc.value)
    with pytest.raises(PipelineError, match="the ort_genai runtime needs the Python module 'onnxruntime_genai'"):
        RT.require()


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


def test_bandwidth_bound_reads_the_working_set_and_never_shows_more_than_100_percent(monkeypatch):
    assert bandwidth.fraction(50.0, 10.0, 100_000_000) == pytest.approx(0.5)
    # which of two sizes reads faster is the host's to say (a timing, not a test): the bound
    # reads exactly the working set it is given, and divides its bytes by the median read time
    import torch  # noqa: F401  (imported before the clock below is faked)
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(bandwidth.time, "perf_counter", lambda: next(clock))   # every read: 1 s
    assert bandwidth.read_gb_s(256_000_000, 1, repeats=3) == pytest.approx(0.256)
    assert bandwidth.shown(0.42) == "42 %" and bandwidth.shown(1.19) == "bound invalid (>100 %)"
