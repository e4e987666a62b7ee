"""Aggregate on hand-made metric files of exactly the shape the other stages write."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.entry import aggregate
from tests.metric_fixtures import PARAMS, write_metrics

VARIANTS = ["float32", "float16", "int8", "int16x8", "dynamic_int8", "onnxruntime-float32", "onnxruntime-int8",
            "openvino-float32", "openvino-int8"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_metrics(tmp_path / "metrics")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return tmp_path


def run(workdir: Path, params: dict | None = None) -> None:
    if params is not None:
        (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    aggregate.main(["--metrics", str(workdir / "metrics"), "--summary",
                    str(workdir / "out" / "summary.json"), "--plots", str(workdir / "plots"),
                    "--params", str(workdir / "params.yaml")])


@pytest.fixture
def no_png(monkeypatch):
    """Skip Chromium in the fast tests; test_cli_end_to_end renders real PNGs."""
    def fake(items, folder, browser):
        for stem, _, _ in items:
            (folder / f"{stem}.png").write_bytes(b"\x89PNG fake")
    monkeypatch.setattr(aggregate.export, "write_png", fake)
    monkeypatch.setattr(aggregate.export, "find_browser", lambda: "/fake/chromium")


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_writes_summary_tables_report_and_figures(workdir, no_png):
    run(workdir)
    summary = json.loads((workdir / "out" / "summary.json").read_text())
    assert list(summary) == ["detector", "llm", "llm_kernel_sweep", "higher_is_better"]
    assert list(summary["llm_kernel_sweep"]) == ["int8", "int4", "int2", "rtn-int8", "rtn-int4", "rtn-int2",
                                                 "awq-int4", "prune+gptq-int4"]
    assert summary["llm"]["int4"]["kernel"] == "TorchLinear" and summary["llm"]["base"]["kernel"] is None
    assert list(summary["detector"]) == VARIANTS
    assert list(summary["llm"]) == ["base", "int8", "int4", "int2", "rtn-int8", "rtn-int4", "rtn-int2",
                                    # chain nodes in params order (the fixture's yaml.dump sorts them)
                                    "awq-int4", "distill", "prune", "prune+distill", "prune+gptq-int4",
                                    "prune24", "ort-fp32", "ort-int8", "ort-int4", "ort-gptq-int8", "ort-gptq-int4",
                                    "ort-gptq-int2", "llamacpp-f16", "llamacpp-q8_0", "llamacpp-q4_0",
                                    "llamacpp-q4_k_m", "llamacpp-packaged", "ov-fp32", "ov-int8", "ov-int4"]
    chain = summary["llm"]["prune+gptq-int4"]   # a chain: its name, bits, sparsity and total cost
    assert (chain["method"], chain["bits"], chain["sparsity"]) == ("prune+gptq", 4, 0.5)
    assert chain["compress_energy_j"] == 20.0 + 640.0                     # prune + gptq steps
    assert chain["compress_time_s"] == pytest.approx((20.0 + 640.0) / 8)
    assert summary["llm"]["prune+distill"]["compress_energy_j"] == 20.0 + 500.0
    assert summary["llm"]["prune"]["size_sparse_mb"] < summary["llm"]["prune"]["size_mb"]
    assert summary["llm"]["prune+gptq-int4"]["size_sparse_mb"] is None    # packed: not sparse
    assert summary["llm"]["ort-gptq-int4"]["method"] == "gptq"
    assert summary["llm"]["int4"]["runtime"] == "torch" and summary["llm"]["base"]["method"] == "none"
    assert summary["llm"]["rtn-int4"]["method"] == "rtn" and summary["llm"]["int4"]["method"] == "gptq"
    assert summary["llm"]["rtn-int4"]["compress_time_s"] == 12.0 and summary["llm"]["int4"]["sparsity"] == 0
    for row in summary["llm"].values():   # the runtime axis' keys, on every LM variant
        assert {"runtime", "method", "bits", "acc", "decode_tokens_per_s", "prefill_tokens_per_s",  # issue 11
                "sparsity", "acc_ci95", "compress_time_s",  # issue 14
                "size_mb", "peak_rss_mb", "bandwidth_fraction"} <= set(row)
    keys = flat(summary)
    assert keys["detector.openvino-int8.runtime"] == "openvino"
    assert keys["detector.openvino-int8.precision"] == "int8"
    assert keys["detector.openvino-int8.peak_rss_mb"] == 304.5
    assert keys["detector.int8.agreement_mAP"] == 0.803
    assert keys["detector.float32.AP"] is None  # offline: no ground truth
    assert keys["llm.int4.acc"] == 0.322 and keys["llm.int4.compress_time_s"] == 44.0
    assert keys["higher_is_better.llm.ppl"] is False
    assert keys["higher_is_better.detector.latency_ms_median"] is False
    assert keys["detector.int8.agreement_mAP_ci95"] == [0.783, 0.823]
    assert keys["llm.int4.acc_ci95"] == [0.302, 0.342] and keys["detector.int8.runtime"] == "litert"
    llm_labels = {"runtime", "method", "bits", "sparsity", "peak_rss_mb_reason", "energy_method", "kernel",
                  "bench_cpu"}
    for family, labels in (("detector", {"runtime", "precision", "energy_method"}), ("llm", llm_labels)):
        for v, row in summary[family].items():  # every metric has a direction, CIs sit beside
            metrics = {k for k in row if not k.endswith(("_ci95", "_p10_p90", "_net"))} - labels
            hib = set(summary["higher_is_better"][family])
            assert metrics <= hib and (v.startswith(("ort-", "llamacpp-", "ov-")) or metrics == hib)
    # energy: every variant of both families, with its method, spread, power and carbon
    for family, keys_ in (("detector", ("energy_j_per_image", "energy_j_per_image_e2e")),
                          ("llm", ("energy_j_per_token_decode", "energy_j_per_token_prefill",
                                   "energy_j_per_example"))):
        for v, row in summary[family].items():
            assert row["energy_method"] == "estimate"
            for key in keys_ + ("power_w", "idle_power_w", "gco2e_per_1000"):
                assert row[key] is not None and row[key] >= 0, key
            for key in keys_:
                assert row[f"{key}_p10_p90"][0] <= row[key] <= row[f"{key}_p10_p90"][1]
            assert "compress_energy_j" in row and "break_even_inferences" in row
    assert keys["higher_is_better.detector.energy_j_per_image_e2e"] is False
    # int8 detector: 19.2 ms -> 0.192 J/image e2e vs float32 0.31: saves 0.118 J; 400 J to convert
    assert keys["detector.int8.break_even_inferences"] == 3390
    assert keys["detector.float16.break_even_inferences"] is None  # slower than float32: never
    assert keys["detector.float32.break_even_inferences"] is None  # the reference
    assert keys["llm.base.compress_energy_j"] is None and keys["llm.int4.compress_energy_j"] == 640.0
    assert keys["llm.int8.break_even_inferences"] is None  # 11.9 tok/s vs base 38.2: costs more
    assert keys["llm.base.gco2e_per_1000"] == pytest.approx(1000 * 0.5 / 38.2 / 3.6e6 * 475)
    # ONNX Runtime rows: builder energy (120 J) + GPTQ's for ort-gptq (640 J at int4); break-even
    # in decoded tokens against ort-fp32 (0.5 J per window / 40 tok/s vs / 150 or / 140 tok/s)
    assert keys["llm.ort-int4.compress_energy_j"] == 120.0
    assert keys["llm.ort-gptq-int4.compress_energy_j"] == 760.0
    assert keys["llm.ort-int4.break_even_inferences"] == math.ceil(120 / (0.5 / 40 - 0.5 / 150))
    assert keys["llm.ort-gptq-int4.break_even_inferences"] == math.ceil(760 / (0.5 / 40 - 0.5 / 140))
    assert keys["llm.ort-fp32.break_even_inferences"] is None  # the reference
    assert keys["llm.ort-int4.energy_j_per_example"] == pytest.approx(40.0 / 150)
    # llama.cpp rows: their own reference is F16 (0.4 J per window / 55 tok/s vs / 140 tok/s)
    assert keys["llm.llamacpp-f16.break_even_inferences"] is None
    assert keys["llm.llamacpp-q4_0.break_even_inferences"] == math.ceil(40 / (0.4 / 55 - 0.4 / 140))
    assert (keys["llm.llamacpp-q4_0.runtime"], keys["llm.llamacpp-q4_0.method"],
            keys["llm.llamacpp-q4_0.bits"]) == ("llama.cpp", "gguf-q4_0", 4)
    assert keys["llm.llamacpp-packaged.method"] == "gguf-q4_1"
    assert (keys["llm.ov-int4.runtime"], keys["llm.ov-int4.method"]) == ("openvino", "nncf-int4")
    assert keys["llm.ov-int8.break_even_inferences"] == math.ceil(40 / (0.4 / 35 - 0.4 / 60))
    det = list(csv.DictReader((workdir / "plots" / "detector.csv").open()))
    assert [r["variant"] for r in det] == VARIANTS
    assert det[2]["AP"] == "" and float(det[2]["size_mb"]) == 4.7
    assert float(det[2]["agreement_mAP_ci_low"]) == 0.783
    llm = list(csv.DictReader((workdir / "plots" / "llm.csv").open()))
    assert [r["variant"] for r in llm] == ["base", "int8", "int4", "int2", "rtn-int8", "rtn-int4", "rtn-int2",
                                           "awq-int4", "distill", "prune", "prune+distill", "prune+gptq-int4",
                                           "prune24"]
    assert llm[0]["compress_time_s"] == "" and llm[3]["bits"] == "2"
    assert llm[0]["energy_method"] == "estimate" and float(llm[0]["energy_j_per_token_decode_p90"]) > 0
    assert float(llm[2]["acc_ci_high"]) == 0.342
    stems = {p.stem for p in (workdir / "plots" / "html").iterdir()}
    assert stems == {p.stem for p in (workdir / "plots" / "png").iterdir()}
    assert {"detector_size", "detector_accuracy", "detector_speed", "llm_size", "llm_accuracy",
            "llm_speed", "detector_tradeoff_size", "detector_tradeoff_speed",
            "llm_tradeoff_size", "llm_tradeoff_speed", "detector_energy", "llm_energy",
            "detector_tradeoff_energy", "llm_tradeoff_energy", "llm_runtimes_speed",
            "llm_runtimes_size", "llm_methods_size"} == stems
    report = (workdir / "plots" / "report.md").read_text()
    assert all(f"(png/{s}.png)" in report for s in stems)
    assert "- `openvino`: int8 ÷ float32 invoke latency = **0.50**" in report
    assert "- `litert`: int8 ÷ float32 invoke latency = **0.62**" in report
    assert "- fastest int8 row: `openvino-int8`, 12.50 ms median" in report
    assert not [p for p in workdir.rglob(".*") if p.name != ".pytest_cache"]  # no temp left


def test_html_renders_offline(workdir, no_png):
    run(workdir)
    html = (workdir / "plots" / "html" / "llm_accuracy.html").read_text()
    assert len(html) > 3_000_000  # plotly.js inline
    assert '<script src="http' not in html and "cdn.plot.ly/plotly" not in html.split("</script>")[0]


def test_fixed_order_and_scalar_bits(workdir, no_png):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["detector"]["precisions"] = ["int8", "float32", "float16"]
    params["detector"]["runtimes"] = ["openvino-int8", "onnxruntime-float32"]
    params["quant"]["bits"] = 4  # dvc exp run -S quant.bits=4
    run(workdir, params)
    summary = json.loads((workdir / "out" / "summary.json").read_text())
    assert list(summary["detector"]) == ["float32", "float16", "int8", "onnxruntime-float32",
                                         "openvino-int8"]
    torch_rows = [v for v, r in summary["llm"].items() if r["runtime"] == "torch"]
    assert torch_rows[:3] == ["base", "int4", "rtn-int4"] and "int8" not in torch_rows


def test_ground_truth_metrics(tmp_path, no_png):
    write_metrics(tmp_path / "metrics", ground_truth=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    run(tmp_path)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["detector"]["int8"]["AP"] == pytest.approx(0.192)


def test_undefined_coco_stats_are_null_and_reported_as_na(tmp_path, no_png):
    """det_eval turns pycocotools' -1 (no object of that size) into null."""
    write_metrics(tmp_path / "metrics", ground_truth=True)
    edit(tmp_path / "metrics" / "detector" / "eval" / "int8.json", lambda d: d.update(AP_small=None))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    run(tmp_path)
    int8 = [r for r in (tmp_path / "plots" / "report.md").read_text().splitlines()
            if r.startswith("| `int8` |")][0]
    assert int8.split(" | ")[4] == "n/a"  # AP small column
    assert int8.split(" | ")[1] == "19.2 [17.2, 21.2]"  # AP with its 95% interval


@pytest.mark.parametrize("breakage, message", [
    (lambda m: (m / "detector" / "eval" / "int8.json").unlink(), "detector/eval/int8.json"),
    (lambda m: (m / "detector" / "bench" / "int8.json").unlink(), "detector/bench/int8.json"),
    (lambda m: (m / "llm" / "quantize.json").unlink(), "quantize.json"),
    (lambda m: (m / "detector" / "convert" / "int8.json").unlink(), "detector/convert/int8.json"),
    (lambda m: (m / "detector" / "eval" / "float16.json").write_text("{not json"), "corrupt"),
])
def test_missing_or_corrupt_file_is_a_clear_error(workdir, no_png, breakage, message):
    breakage(workdir / "metrics")
    with pytest.raises(PipelineError, match=message):
        run(workdir)
    assert not (workdir / "out").exists() and not (workdir / "plots").exists()


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("file, change, message", [
    ("detector/bench/float16.json", lambda d: d.pop("latency_ms_p90"),
     r"bench/float16.json: 'latency_ms_p90': Field required"),
    ("detector/agreement.json", lambda d: d.pop("int8"), r"agreement.json: missing key 'int8'"),
    ("detector/agreement.json", lambda d: d["int8"].pop("agreement_mAP"),
     r"agreement.json: 'int8.agreement_mAP': Field required"),
    ("llm/eval/gptq.json", lambda d: d.pop("int2"), r"gptq.json: missing key 'int2'"),
    ("llm/eval/gptq.json", lambda d: d["int4"].pop("topk_word_acc"),
     r"gptq.json: 'int4.topk_word_acc': Field required"),
    ("llm/eval/base.json", lambda d: d["base"].update(acc="high"), r"'base.acc': Input should be a valid number"),
    ("llm/eval/base.json", lambda d: d["base"].update(acc=1.7), r"'base.acc': Input should be less than or equal to 1"),
    ("llm/bench/base.json", lambda d: d["base"].update(decode_tokens_per_s=None), r"'base.decode_tokens_per_s'"),
    ("llm/eval/base.json", lambda d: d["base"].update(accuracy=0.3), r"'base.accuracy': Extra inputs"),
    # a metric file that predates energy is a clear error naming the missing figure
    ("llm/bench/base.json", lambda d: d["base"].pop("energy_decode"), r"'base.energy_decode': Field required"),
    ("llm/quantize.json", lambda d: d["int4"]["compress_energy"].pop("joules"),
     r"'int4.compress_energy.joules': Field required"),
    ("detector/bench/int8.json", lambda d: d["energy_e2e"].update(method="guess"), r"'energy_e2e.method'"),
    ("detector/eval/int8.json", lambda d: d.update(has_ground_truth=True),
     r"int8.json: 'AP' is null although has_ground_truth is true"),
])
def test_missing_or_malformed_metric_names_file_and_key(workdir, no_png, file, change, message):
    run(workdir)  # a good run first: its outputs must survive the failing one untouched
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and "metrics" not in p.parts}
    edit(workdir / "metrics" / file, change)
    with pytest.raises(PipelineError, match=message):
        run(workdir)
    after = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and "metrics" not in p.parts}
    assert after == before


def test_missing_browser_fails_before_writing(workdir, monkeypatch, tmp_path):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
    with pytest.raises(PipelineError, match="BROWSER_PATH"):
        run(workdir)
    monkeypatch.delenv("BROWSER_PATH")
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium on PATH
    with pytest.raises(PipelineError, match="no Chromium found"):
        run(workdir)
    assert not (workdir / "out").exists() and not (workdir / "plots").exists()


@pytest.mark.skipif(not Path("/bin/false").exists(), reason="no /bin/false")
def test_browser_that_fails_to_start_is_a_clear_error(workdir, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/bin/false")
    with pytest.raises(PipelineError, match="PNG export failed with browser /bin/false"):
        run(workdir)
    assert not [p for p in workdir.rglob("*") if p.is_file() and "metrics" not in p.parts
                and p.name != "params.yaml"]


def test_label_positions_keep_close_labels_apart():
    from stages.reporting.geometry import label_positions
    assert label_positions([(0.1, 0.1), (0.9, 0.9)]) == ["middle right", "middle right"]
    assert label_positions([(0.80, 0.90), (0.85, 0.91)]) == ["middle left", "middle right"]
    assert label_positions([(0.50, 0.90), (0.51, 0.85)]) == ["top center", "bottom center"]


def test_pareto_front_keeps_only_undominated_variants():
    from stages.reporting.geometry import pareto
    pts = {"base": (540, 0.35), "int8": (180, 0.35), "int4": (110, 0.32), "int2": (80, 0.0),
           "bad": (200, 0.30)}
    assert pareto(pts, cost_lower=True) == ["int2", "int4", "int8"]  # base and bad dominated
    assert pareto({"a": (10, 0.5), "b": (20, 0.6)}, cost_lower=False) == ["b"]


CHECK_IMPORTS = """
import sys, time
t0 = time.perf_counter()
from stages.core.errors import run_main
from stages.entry import aggregate
run_main(aggregate.main, sys.argv[1:])  # as python -m stages.entry.aggregate
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tensorflow', 'transformers',
               'gptqmodel', 'ai_edge_litert', 'pycocotools'})
print(f'heavy={heavy} seconds={time.perf_counter() - t0:.1f}')
"""


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="no Chromium for kaleido")
def test_cli_end_to_end_real_pngs_no_model_imports(workdir):
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS, "--metrics", str(workdir / "metrics"),
         "--summary", str(workdir / "out" / "summary.json"), "--plots", str(workdir / "plots"),
         "--params", str(workdir / "params.yaml")],
        cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "heavy=[]" in proc.stdout
    assert "rendering 17 PNGs" in proc.stderr and "done in" in proc.stderr
    pngs = sorted((workdir / "plots" / "png").glob("*.png"))
    assert len(pngs) == 17
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000
               for p in pngs)


def test_gptq_energy_missing_from_an_old_quantize_file_is_reported_not_measured(workdir, no_png):
    """quantize.json from before the meter: GPTQ energy and break-even n/a, said in the report."""
    path = workdir / "metrics" / "llm" / "quantize.json"
    doc = json.loads(path.read_text())
    for row in doc.values():
        row.pop("compress_energy")
    path.write_text(json.dumps(doc))
    run(workdir)
    summary = json.loads((workdir / "out" / "summary.json").read_text())
    assert summary["llm"]["int4"]["compress_energy_j"] is None
    assert summary["llm"]["int4"]["break_even_inferences"] is None
    report = (workdir / "plots" / "report.md").read_text()
    assert "**GPTQ energy not measured** for `int8`, `int4`, `int2`" in report
