"""The GPU results set's report (stages/reporting/gpu.py) on the committed metrics/gpu files
and on broken copies of them: never mixed with CPU rows, accuracy n/a for random weights."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stages.core.errors import PipelineError
from stages.reporting import gpu as G

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "metrics" / "gpu"


def test_every_committed_gpu_row_is_cuda_and_speed_only_rows_have_no_accuracy():
    gpu = G.load(GPU)
    assert gpu["rows"] and all(r["device"] == "cuda" and r["energy_method"].startswith("nvml")
                               for r in gpu["rows"].values())
    for name, r in gpu["rows"].items():
        assert r["speed_only"] == (not name.startswith("smollm2")) and (r["acc"] is None)
        cells = next(line for line in G.table(gpu) if f"`{name}`" in line).split(" | ")
        assert ("n/a" in cells[2]) == r["speed_only"], name
    assert gpu["machine"]["gpu"].startswith("NVIDIA") and gpu["machine"]["driver"]


def test_bound_fraction_is_speed_over_copy_bandwidth_per_weight_byte():
    for name, r in G.load(GPU)["rows"].items():
        bound = r["copy_gb_s"] * 1e9 / r["weight_bytes_per_token"]
        assert r["bandwidth_fraction"] == pytest.approx(r["decode_tokens_per_s"] / bound, rel=0.02), name


def test_break_even_divides_the_gptq_energy_by_the_saving_per_example():
    gpu = {"quant": {"int4": {"compress_energy": {"joules": 600.0}}},
           "evals": {"base": {"energy_eval": {"j_per_unit": 0.5}}, "int4": {"energy_eval": {"j_per_unit": 0.3}},
                     "int8": {"energy_eval": {"j_per_unit": 0.6}}}}
    assert G.break_even(gpu, "int4") == "3,000"
    gpu["quant"]["int8"] = {"compress_energy": {"joules": 10.0}}
    assert G.break_even(gpu, "int8") == "never" and G.break_even(gpu, "int2") == "n/a"


@pytest.mark.parametrize("damage, message", [
    (lambda d: d["variants"]["llama-3.2-3b-fp16"].update(acc=0.3), "acc must be null"),
    (lambda d: d["variants"]["llama-3.2-3b-fp16"].update(device="cpu"), "device"),
    (lambda d: d.pop("copy_gb_s"), "copy_gb_s"),
])
def test_a_bad_gpu_file_is_a_one_line_error_naming_it(tmp_path, damage, message):
    shutil.copytree(GPU, tmp_path / "gpu")
    f = tmp_path / "gpu" / "speed_shapes.json"
    data = json.loads(f.read_text())
    damage(data)
    f.write_text(json.dumps(data))
    with pytest.raises(PipelineError, match=message) as err:
        G.load(tmp_path / "gpu")
    assert "speed_shapes.json" in str(err.value) and "\n" not in str(err.value)


def test_no_speed_files_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match="no GPU speed files"):
        G.load(tmp_path)
