"""The GPU results set's report (stages/reporting/gpu.py) on the committed metrics/gpu files
and on broken copies of them: never mixed with CPU rows, accuracy n/a for random weights."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stages.core.errors import PipelineError
from stages.reporting import gpu as G, gpu_methods

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "metrics" / "gpu"


def load_without(tmp_path: Path, rel: str) -> dict:
    """G.load of a copy of the committed GPU set with the file `rel` removed."""
    shutil.copytree(GPU, tmp_path / "gpu")
    (tmp_path / "gpu" / rel).unlink()
    return G.load(tmp_path / "gpu")


def test_every_committed_gpu_row_is_cuda_and_speed_only_rows_have_no_accuracy():
    gpu = G.load(GPU)
    assert gpu["rows"] and all(r["device"] == "cuda" and r["energy_method"].startswith("nvml")
                               for r in gpu["rows"].values())
    for name, r in gpu["rows"].items():
        # speed-only rows are named after their shape (smollm2-135m-int4-…); the pipeline's own
        # SmolLM2 folders are smollm2-<variant>
        assert r["speed_only"] == name.startswith(r["model"] + "-") and (r["acc"] is None)
        cells = next(line for line in G.table(gpu) if f"`{name}`" in line).split(" | ")
        assert ("n/a" in cells[3]) == r["speed_only"], name
        assert cells[1].strip() == str(r["host"]) and 1 <= r["host"] <= len(gpu["hosts"])
    assert gpu["machine"]["gpu"].startswith("NVIDIA") and gpu["machine"]["driver"]


def test_figures_put_one_host_one_decode_mode_and_one_kind_of_weights_on_each_axis():
    """gpu_decode_bound: a panel per (host, kind of weights), every bar the batch-1 CUDA-graph
    decode; gpu_accuracy_energy: each width's accuracy beside the joules of the same eval run."""
    gpu = G.load(GPU)
    figs = {stem: fig for stem, _, fig in G.figures(gpu)}
    bound = figs["gpu_decode_bound"]
    by_axis = {}
    for trace in bound.data:   # horizontal bars: variant names on y, tok/s on x
        by_axis.setdefault(trace.yaxis, set()).update(trace.y)
    for names in by_axis.values():
        rows = [gpu["rows"][n] for n in names]
        assert len({r["host"] for r in rows}) == 1 and len({r["speed_only"] for r in rows}) == 1
    measured = [t for t in bound.data if t.name.startswith("measured")]
    for t in measured:
        assert list(t.x) == [next(d["tokens_per_s"] for d in gpu["rows"][n]["decode"]
                                  if (d["cache"], d["batch"]) == ("graph", 1)) for n in t.y]
    plotted = {n for t in measured for n in t.y}
    assert plotted == {n for n, r in gpu["rows"].items() if G.graph_tokens_per_s(r) is not None}
    acc = figs["gpu_accuracy_energy"].data[0]
    assert list(acc.y) == [e["acc"] for e in gpu["evals"].values()]
    assert list(acc.x) == [e["energy_eval"]["j_per_unit"] for e in gpu["evals"].values()]
    assert "5,153" in figs["gpu_accuracy_energy"].layout.title.text


def test_bound_fraction_is_speed_over_copy_bandwidth_per_weight_byte():
    for name, r in G.load(GPU)["rows"].items():
        bound = r["copy_gb_s"] * 1e9 / r["weight_bytes_per_token"]
        assert r["bandwidth_fraction"] == pytest.approx(r["decode_tokens_per_s"] / bound, rel=0.02), name


def test_break_even_divides_the_gptq_energy_by_a_saving_outside_the_spread():
    def fig(j, p10, p90, windows=5):
        return {"energy_eval": {"j_per_unit": j, "j_per_unit_p10": p10, "j_per_unit_p90": p90,
                                "windows": windows}}
    gpu = {"quant": {"int4": {"compress_energy": {"joules": 600.0}}},
           "evals": {"base": fig(0.5, 0.48, 0.52), "int4": fig(0.3, 0.29, 0.31), "int8": fig(0.6, 0.58, 0.62)}}
    assert G.break_even(gpu, "int4") == "3,000"
    gpu["quant"]["int8"] = {"compress_energy": {"joules": 10.0}}
    assert G.break_even(gpu, "int8") == "never" and G.break_even(gpu, "int2") == "n/a"
    gpu["evals"]["int4"] = fig(0.47, 0.40, 0.49)        # p90 above the base's p10: noise
    assert G.break_even(gpu, "int4") == "within noise"
    gpu["evals"]["int4"] = fig(0.3, 0.3, 0.3, windows=1)  # one window: no spread to judge by
    assert G.break_even(gpu, "int4").startswith("n/r")


def test_every_committed_break_even_is_resolved_or_says_why():
    gpu = G.load(GPU)
    for w in gpu["evals"]:
        cell = G.break_even(gpu, w)
        assert cell in ("n/a", "never", "within noise") or cell.startswith("n/r") or cell.replace(",", "").isdigit()


@pytest.mark.parametrize("damage, message", [
    (lambda d: d["variants"]["llama-3.2-3b-fp16"].update(acc=0.3), "acc must be null"),
    (lambda d: d["variants"]["llama-3.2-3b-fp16"].update(device="cpu"), "device"),
    (lambda d: d.pop("copy_gb_s"), "copy_gb_s"),
])
def test_a_bad_gpu_file_is_a_one_line_error_naming_it(tmp_path, damage, message):
    shutil.copytree(GPU, tmp_path / "gpu")
    f = tmp_path / "gpu" / "speed" / "llama-3.2-3b-fp16.json"
    data = json.loads(f.read_text())
    damage(data)
    f.write_text(json.dumps(data))
    with pytest.raises(PipelineError, match=message) as err:
        G.load(tmp_path / "gpu")
    assert "llama-3.2-3b-fp16.json" in str(err.value) and "\n" not in str(err.value)


def test_no_speed_files_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match="no GPU speed rows"):
        G.load(tmp_path)


def test_one_row_per_file_named_as_the_file_so_no_file_overrides_another(tmp_path):
    gpu = G.load(GPU)
    files = sorted((GPU / "speed").glob("*.json"))
    assert [f.stem for f in files] == sorted(gpu["rows"]) and len(files) >= 20
    shutil.copytree(GPU, tmp_path / "gpu")
    speed = tmp_path / "gpu" / "speed"
    one = json.loads((speed / "tinyllama-1.1b-fp16.json").read_text())
    two = json.loads((speed / "llama-3.2-3b-fp16.json").read_text())
    one["variants"] |= two["variants"]   # a second row in one file
    (speed / "tinyllama-1.1b-fp16.json").write_text(json.dumps(one))
    with pytest.raises(PipelineError, match="one row named as the file"):
        G.load(tmp_path / "gpu")
    (speed / "tinyllama-1.1b-fp16.json").unlink()
    (speed / "llama-3.2-3b-fp16.json").rename(speed / "other.json")   # a row under another name
    with pytest.raises(PipelineError, match="other.json: a speed file holds one row"):
        G.load(tmp_path / "gpu")


def test_method_table_puts_gptq_beside_awq_and_rtn_and_needs_each_cost_file(tmp_path):
    gpu = G.load(GPU)
    lines = gpu_methods.method_table(gpu)
    body = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert set(body) == {"gptq", "awq", "rtn"}
    assert f"{gpu['evals']['int4']['acc']:.4f}" in body["gptq"]
    for m in ("awq", "rtn"):
        assert f"{gpu['methods'][m]['acc']:.4f}" in body[m] and gpu["methods"][m]["compress_j"] > 0
    with pytest.raises(PipelineError, match="no cost file awq.json"):
        load_without(tmp_path, "methods/awq.json")


def test_profile_table_reports_the_graph_replay_profiles_per_token():
    from stages.reporting.gpu_profile import profile_table

    gpu = G.load(GPU)
    lines = profile_table(gpu["rows"])
    r = gpu["rows"]["llama-3.2-3b-int4-gptq_marlin"]
    p = next(d for d in r["decode"] if d["cache"] == "graph")["profile"]
    line = next(x for x in lines if "`llama-3.2-3b-int4-gptq_marlin`" in x)
    assert f"| {1e3 * p['wall_s_per_token']:.2f} | {1e3 * p['kernel_s_per_token']:.2f} |" in line
    top = max(p["top_kernels"].values()) / r["profile_tokens"]
    assert f"| {1e3 * top:.2f} |" in line and p["kernel_s_per_token"] <= p["wall_s_per_token"]


def test_nvml_figures_below_the_counters_step_are_pooled_or_not_shown(tmp_path):
    """Files from before energy_min_window_s timed one call per window: a 0.2 s graph decode
    window shows the pooled joules (marked †), a 30 ms prefill shows n/r. A file written with >= 1 s windows
    (energy_min_window_s) keeps its medians."""
    (tmp_path / "gpu" / "speed").mkdir(parents=True)
    data = json.loads((GPU / "speed" / "smollm2-135m-fp16.json").read_text())
    for d in data["variants"]["smollm2-135m-fp16"]["decode"]:   # as a one-call window run wrote it
        d["energy"]["seconds"] = 0.2 * d["energy"]["windows"]
    data["energy_min_window_s"] = None
    f = tmp_path / "gpu" / "speed" / "smollm2-135m-fp16.json"
    f.write_text(json.dumps(data))
    row = G.load(tmp_path / "gpu")["rows"]["smollm2-135m-fp16"]
    graph = next(d for d in row["decode"] if d["cache"] == "graph")["energy"]
    assert graph["seconds"] / graph["windows"] < 1.0 and row["j_decode_pooled"]
    assert row["j_decode"] == pytest.approx(graph["joules"] / graph["units"])
    assert row["j_prefill"] is None
    line = next(x for x in G.table(G.load(tmp_path / "gpu")) if "`smollm2-135m-fp16`" in x)
    assert " † | n/r |" in line
    for d in data["variants"]["smollm2-135m-fp16"]["decode"]:   # as a >= 1 s window run writes it
        d["energy"]["seconds"] = max(d["energy"]["seconds"], 1.0 * d["energy"]["windows"])
    data["energy_min_window_s"] = 1.0
    f.write_text(json.dumps(data))
    row = G.load(tmp_path / "gpu")["rows"]["smollm2-135m-fp16"]
    assert not row["j_decode_pooled"] and row["j_decode"] == row["energy_j_per_token_decode"]
    assert row["j_prefill"] == row["energy_j_per_token_prefill"]
