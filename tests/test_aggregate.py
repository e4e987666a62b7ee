"""Aggregate on hand-made metric files of exactly the shape the other stages write."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from stages import aggregate
from stages.common import PipelineError

DET = {  # variant: (size_mb, latency median ms, agreement mAP, AP with ground truth)
    "float32": (16.7, 31.0, 1.0, 0.215), "float16": (8.4, 33.5, 0.981, 0.214),
    "int8": (4.7, 19.2, 0.803, 0.192)}
LLM = {  # variant: (size_mb, acc, decode tokens/s)
    "base": (538.1, 0.352, 38.2), "int8": (181.4, 0.350, 11.9), "int4": (112.6, 0.322, 12.6),
    "int2": (78.3, 0.014, 12.9)}
PARAMS = {
    "seed": 0, "coco": {"source": "offline", "num_images": 1000},
    "detector": {"source": "package", "precisions": ["float32", "float16", "int8"],
                 "calib_size": 100, "score_threshold": 0.001, "iou_threshold": 0.6,
                 "max_detections": 100},
    "eval_det": {"threads": 2, "warmup": 5, "latency_runs": 50},
    "lambada": {"source": "offline"},
    "llm": {"source": "package", "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct"},
    "quant": {"bits": [8, 4, 2], "group_size": 64, "calib_size": 128},
    "eval_lm": {"k": 5, "limit": 500, "threads": 2},
}


def det_metrics(variant: str, ground_truth: bool) -> dict:
    size, lat, _, ap = DET[variant]
    aps = {key: (ap * f if ground_truth else None) for key, f in (
        ("AP", 1), ("AP50", 1.6), ("AP75", 1.0), ("AP_small", 0.1), ("AP_medium", 0.7),
        ("AP_large", 2.0), ("AR100", 1.2))}
    return {**aps, "has_ground_truth": ground_truth, "num_images": 50 if ground_truth else 20,
            "latency_ms_median": lat, "latency_ms_p90": lat * 1.12, "invoke_per_s": 1000 / lat,
            "images_per_s": 800 / lat, "e2e_over_invoke": 1.25, "size_mb": size, "threads": 2}


def llm_metrics(variant: str) -> dict:
    size, acc, decode = LLM[variant]
    bits = 32 if variant == "base" else int(variant[3:])
    return {"acc": acc, "ppl": 18.0 / max(acc, 0.01), "topk_acc": min(1, acc * 1.9),
            "topk_word_acc": min(1, acc * 1.5), "k": 5, "num_examples": 500,
            "decode_tokens_per_s": decode, "prefill_tokens_per_s": decode * 20,
            "eval_examples_per_s": decode / 3, "size_mb": size, "param_mb": size * 0.98,
            "bits": bits}


def write_metrics(root: Path, ground_truth: bool = False, bits=(8, 4, 2)) -> Path:
    """metrics/{detector,llm}/... as det_eval, det_agreement, lm_eval and lm_quantize write."""
    (root / "detector").mkdir(parents=True)
    (root / "llm").mkdir(parents=True)
    for v in DET:
        (root / "detector" / f"{v}.json").write_text(json.dumps(det_metrics(v, ground_truth)))
    agreement = {v: {"agreement_mAP": a, "agreement_AP50": min(1, a * 1.05)}
                 for v, (_, _, a, _) in DET.items()}
    (root / "detector" / "agreement.json").write_text(json.dumps(agreement))
    (root / "llm" / "base.json").write_text(json.dumps({"base": llm_metrics("base")}))
    gptq = {f"int{b}": llm_metrics(f"int{b}") for b in bits}
    (root / "llm" / "gptq.json").write_text(json.dumps(gptq))
    quant = {v: {"bits": m["bits"], "group_size": 64, "quant_time_s": 40.0 + m["bits"],
                 "size_mb": m["size_mb"]} for v, m in gptq.items()}
    (root / "llm" / "quantize.json").write_text(json.dumps(quant))
    return root


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
    monkeypatch.setattr(aggregate.figures, "write_png", fake)
    monkeypatch.setattr(aggregate.figures, "find_browser", lambda: "/fake/chromium")


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_writes_summary_tables_report_and_figures(workdir, no_png):
    run(workdir)
    summary = json.loads((workdir / "out" / "summary.json").read_text())
    assert list(summary) == ["detector", "llm", "higher_is_better"]
    assert list(summary["detector"]) == ["float32", "float16", "int8"]
    assert list(summary["llm"]) == ["base", "int8", "int4", "int2"]
    keys = flat(summary)
    assert keys["detector.int8.agreement_mAP"] == 0.803
    assert keys["detector.float32.AP"] is None  # offline: no ground truth
    assert keys["llm.int4.acc"] == 0.322 and keys["llm.int4.quant_time_s"] == 44.0
    assert keys["higher_is_better.llm.ppl"] is False
    assert keys["higher_is_better.detector.latency_ms_median"] is False
    for family in ("detector", "llm"):  # every summary metric has a direction
        for row in summary[family].values():
            assert set(row) == set(summary["higher_is_better"][family])
    det = list(csv.DictReader((workdir / "plots" / "detector.csv").open()))
    assert [r["variant"] for r in det] == ["float32", "float16", "int8"]
    assert det[2]["AP"] == "" and float(det[2]["size_mb"]) == 4.7
    llm = list(csv.DictReader((workdir / "plots" / "llm.csv").open()))
    assert [r["variant"] for r in llm] == ["base", "int8", "int4", "int2"]
    assert llm[0]["quant_time_s"] == "" and llm[3]["bits"] == "2"
    stems = {p.stem for p in (workdir / "plots" / "html").iterdir()}
    assert stems == {p.stem for p in (workdir / "plots" / "png").iterdir()}
    assert {"detector_size", "detector_accuracy", "detector_speed", "llm_size", "llm_accuracy",
            "llm_speed", "detector_tradeoff_size", "detector_tradeoff_speed",
            "llm_tradeoff_size", "llm_tradeoff_speed"} == stems
    report = (workdir / "plots" / "report.md").read_text()
    assert all(f"(png/{s}.png)" in report for s in stems)
    assert not [p for p in workdir.rglob(".*") if p.name != ".pytest_cache"]  # no temp left


def test_html_renders_offline(workdir, no_png):
    run(workdir)
    html = (workdir / "plots" / "html" / "llm_accuracy.html").read_text()
    assert len(html) > 3_000_000  # plotly.js inline
    assert '<script src="http' not in html and "cdn.plot.ly/plotly" not in html.split("</script>")[0]


def test_fixed_order_and_scalar_bits(workdir, no_png):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["detector"]["precisions"] = ["int8", "float32", "float16"]
    params["quant"]["bits"] = 4  # dvc exp run -S quant.bits=4
    run(workdir, params)
    summary = json.loads((workdir / "out" / "summary.json").read_text())
    assert list(summary["detector"]) == ["float32", "float16", "int8"]
    assert list(summary["llm"]) == ["base", "int4"]


def test_ground_truth_metrics(tmp_path, no_png):
    write_metrics(tmp_path / "metrics", ground_truth=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    run(tmp_path)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["detector"]["int8"]["AP"] == pytest.approx(0.192)


def test_undefined_coco_stats_are_null_and_reported_as_na(tmp_path, no_png):
    """det_eval turns pycocotools' -1 (no object of that size) into null."""
    write_metrics(tmp_path / "metrics", ground_truth=True)
    edit(tmp_path / "metrics" / "detector" / "int8.json", lambda d: d.update(AP_small=None))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    run(tmp_path)
    int8 = [r for r in (tmp_path / "plots" / "report.md").read_text().splitlines()
            if r.startswith("| `int8` |")][0]
    assert int8.split(" | ")[4] == "n/a"  # AP small column


@pytest.mark.parametrize("breakage, message", [
    (lambda m: (m / "detector" / "int8.json").unlink(), "detector/int8.json"),
    (lambda m: (m / "llm" / "quantize.json").unlink(), "quantize.json"),
    (lambda m: (m / "detector" / "float16.json").write_text("{not json"), "corrupt"),
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
    ("detector/float16.json", lambda d: d.pop("latency_ms_p90"),
     r"detector/float16.json: missing key 'latency_ms_p90'"),
    ("detector/agreement.json", lambda d: d.pop("int8"), r"agreement.json: missing key 'int8'"),
    ("detector/agreement.json", lambda d: d["int8"].pop("agreement_mAP"),
     r"agreement.json \[int8\]: missing key 'agreement_mAP'"),
    ("llm/gptq.json", lambda d: d.pop("int2"), r"gptq.json: missing key 'int2'"),
    ("llm/gptq.json", lambda d: d["int4"].pop("topk_word_acc"),
     r"gptq.json \[int4\]: missing key 'topk_word_acc'"),
    ("llm/base.json", lambda d: d["base"].update(acc="0.35"), r"'acc' must be a finite number"),
    ("llm/base.json", lambda d: d["base"].update(size_mb=None), r"'size_mb' must be"),
    ("detector/int8.json", lambda d: d.update(has_ground_truth=True),
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
    from stages.figures import label_positions
    assert label_positions([(0.1, 0.1), (0.9, 0.9)]) == ["middle right", "middle right"]
    assert label_positions([(0.80, 0.90), (0.85, 0.91)]) == ["middle left", "middle right"]
    assert label_positions([(0.50, 0.90), (0.51, 0.85)]) == ["top center", "bottom center"]


CHECK_IMPORTS = """
import sys, time
t0 = time.perf_counter()
from stages import aggregate, common
common.run_main(aggregate.main, sys.argv[1:])  # as python -m stages.aggregate
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
    assert "rendering 10 PNGs" in proc.stderr and "done in" in proc.stderr
    pngs = sorted((workdir / "plots" / "png").glob("*.png"))
    assert len(pngs) == 10
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000
               for p in pngs)
