"""Aggregate on hand-made metric files of exactly the shape the other stages write."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.entry import aggregate
from tests.metric_fixtures import HOST, LM_VARIANTS, PARAMS, write_metrics

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
                    "--headline", str(workdir / "out" / "headline"), "--params", str(workdir / "params.yaml")])


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


LM_STEMS = {f"lm_{m}_{axis}" for m in ("smollm2-135m", "gemma3-270m") for axis in ("decode_tokens_per_s", "size_mb")}
DET_STEMS = {"detector_size", "detector_accuracy", "detector_speed", "detector_tradeoff_size",
             "detector_tradeoff_speed", "detector_energy", "detector_tradeoff_energy"}


def test_writes_summary_tables_report_and_figures(workdir, no_png):
    run(workdir)
    summary = json.loads((workdir / "out" / "summary.json").read_text())
    assert list(summary) == ["detector", "lm", "verdict", "host", "hosts", "higher_is_better"]
    assert summary["host"] == HOST and list(summary["hosts"]) == [HOST]
    assert list(summary["detector"]) == VARIANTS
    keys = flat(summary)
    assert [keys[f"detector.openvino-int8.{k}"] for k in ("runtime", "precision", "peak_rss_mb")] == \
        ["openvino", "int8", 304.5]
    assert keys["detector.int8.agreement_mAP"] == 0.803 and keys["detector.float32.AP"] is None  # no ground truth
    assert keys["detector.int8.agreement_mAP_ci95"] == [0.783, 0.823] and keys["detector.int8.runtime"] == "litert"
    for v, row in summary["detector"].items():  # every metric has a direction, CIs sit beside
        metrics = {k for k in row if not k.endswith(("_ci95", "_p10_p90", "_net"))}
        assert metrics - {"runtime", "precision", "energy_method"} == set(summary["higher_is_better"]["detector"])
        assert row["energy_method"] == "estimate"   # energy: its method, spread, power and carbon
        for key in ("energy_j_per_image", "energy_j_per_image_e2e", "power_w", "idle_power_w", "gco2e_per_1000"):
            assert row[key] is not None and row[key] >= 0, key
        for key in ("energy_j_per_image", "energy_j_per_image_e2e"):
            assert row[f"{key}_p10_p90"][0] <= row[key] <= row[f"{key}_p10_p90"][1]
        assert "compress_energy_j" in row and "break_even_inferences" in row
    assert [keys[f"higher_is_better.detector.{k}"] for k in ("latency_ms_median", "energy_j_per_image_e2e")] == \
        [False, False]
    # int8: 19.2 ms -> 0.192 J/image e2e vs float32 0.31: saves 0.118 J; 400 J to convert; float16
    # is slower than float32 (never repays), float32 is the reference
    assert keys["detector.int8.break_even_inferences"] == 3390
    assert keys["detector.float16.break_even_inferences"] is keys["detector.float32.break_even_inferences"] is None
    # the LM section: one entry per variant (its metric file stem), paired with its model's reference
    assert set(summary["lm"]) == set(LM_VARIANTS)
    ort = summary["lm"]["smollm2-135m-ort-int4"]
    assert (ort["model"], ort["variant"], ort["bits"], ort["acc"], ort["speedup"], ort["cpu"], ort["verdict"]) == \
        ("smollm2-135m", "base · ort_genai int4", 4, 0.55, 5.0, "Test CPU 9000", "same accuracy, on both fronts")
    assert ort["delta_acc"] == pytest.approx(-0.05) and ort["energy_j_per_token"] == pytest.approx(0.5 / 150)
    assert summary["lm"]["smollm2-135m-prune+gptq4-pytorch"]["verdict"] == "less accurate, dominated"
    assert "hits" not in ort and "record" not in ort   # per-example data stays in the metric files
    assert [keys[f"higher_is_better.lm.{k}"] for k in ("acc", "delta_acc", "ppl", "ttft_ms")] == \
        [True, True, False, False]
    det = list(csv.DictReader((workdir / "plots" / "detector.csv").open()))
    assert [r["variant"] for r in det] == VARIANTS
    assert (det[2]["AP"], float(det[2]["size_mb"]), float(det[2]["agreement_mAP_ci_low"])) == ("", 4.7, 0.783)
    lm_csv = list(csv.DictReader((workdir / "plots" / "lm.csv").open()))
    order = [(r["model"], -float(r["acc"])) for r in lm_csv]   # by model, best accuracy first
    assert order == sorted(order) and len(lm_csv) == len(LM_VARIANTS)
    assert lm_csv[0]["variant"] == "gemma3-270m · base · openvino int8"
    assert float(lm_csv[-1]["delta_acc"]) == pytest.approx(-0.3) and lm_csv[-1]["chain"] == "prune+gptq"
    assert lm_csv[0]["runtime"] == "openvino" and float(lm_csv[0]["decode_tokens_per_s"]) == 60.0
    stems = {p.stem for p in (workdir / "plots" / "html").iterdir()}
    assert stems == {p.stem for p in (workdir / "plots" / "png").iterdir()} == DET_STEMS | LM_STEMS
    report = (workdir / "plots" / "report.md").read_text()
    assert all(f"(png/{s}.png)" in report for s in stems)
    assert "### gemma3-270m" in report and "### smollm2-135m\n\nBase: " in report   # one table per model
    grid = report[report.index("### What ran, per model"):]
    assert "| runtime `openvino` | 1 run |" in grid and "| method `awq` | not run: " in grid
    assert "| prune 50%+gptq-int4 · pytorch | 4 | 113 | 30.0 [" in report
    assert "- `openvino`: int8 ÷ float32 invoke latency = **0.50**" in report
    assert "- `litert`: int8 ÷ float32 invoke latency = **0.62**" in report
    assert "- fastest int8 row: `openvino-int8`, 12.50 ms median" in report
    assert not [p for p in workdir.rglob(".*") if p.name != ".pytest_cache"]  # no temp left
    html = (workdir / "plots" / "html" / "lm_smollm2-135m_decode_tokens_per_s.html").read_text()
    assert len(html) > 3_000_000  # plotly.js inline
    assert '<script src="http' not in html and "cdn.plot.ly/plotly" not in html.split("</script>")[0]


def test_ground_truth_undefined_coco_stats_and_fixed_order(tmp_path, no_png):
    """det_eval turns pycocotools' -1 (no object of that size) into null; rows keep a fixed order."""
    write_metrics(tmp_path / "metrics", ground_truth=True)
    edit(tmp_path / "metrics" / "detector" / "eval" / "int8.json", lambda d: d.update(AP_small=None))
    run(tmp_path, {**PARAMS, "detector": {**PARAMS["detector"], "precisions": ["int8", "float32", "float16"],
                                          "runtimes": ["openvino-int8", "onnxruntime-float32"]}})
    det = json.loads((tmp_path / "out" / "summary.json").read_text())["detector"]
    assert list(det) == ["float32", "float16", "int8", "onnxruntime-float32", "openvino-int8"]
    assert det["int8"]["AP"] == pytest.approx(0.192)
    int8 = [r for r in (tmp_path / "plots" / "report.md").read_text().splitlines()
            if r.startswith("| `int8` |")][0]
    assert int8.split(" | ")[4] == "n/a"  # AP small column
    assert int8.split(" | ")[1] == "19.2 [17.2, 21.2]"  # AP with its 95% interval


ORT = "smollm2-135m-ort-int4.json"


@pytest.mark.parametrize("breakage, message", [
    (lambda m: (m / "detector" / "eval" / "int8.json").unlink(), "detector/eval/int8.json"),
    (lambda m: (m / "detector" / "bench" / HOST / "int8.json").unlink(), f"detector/bench/{HOST}/int8.json"),
    (lambda m: (m / "detector" / "convert" / "int8.json").unlink(), "detector/convert/int8.json"),
    (lambda m: (m / "detector" / "eval" / "float16.json").write_text("{not json"), "corrupt"),
    (lambda m: (m / "lm" / "bench" / HOST / ORT).unlink(), f"eval/{ORT} has no bench metrics .*lm_bench stage"),
    (lambda m: (m / "lm" / "build" / ORT).unlink(), f"eval/{ORT} has no build metrics"),
    (lambda m: (m / "lm" / "compress" / "smollm2-135m-prune+gptq4.json").unlink(),
     r"no compress metrics for step 2 \(gptq\) of its chain"),
    (lambda m: (m / "lm" / "eval" / ORT).write_text("{not json"), f"LM eval metric file .*{ORT} is corrupt"),
    (lambda m: (m / "lm" / "eval" / "gemma3-270m-pytorch.json").unlink(),
     "no eval metrics for gemma3-270m-pytorch .*run its lm_eval stage"),
])
def test_missing_or_corrupt_file_is_a_clear_error(workdir, no_png, breakage, message):
    breakage(workdir / "metrics")
    with pytest.raises(PipelineError, match=message) as exc:
        run(workdir)
    assert "\n" not in str(exc.value)   # one line
    assert not (workdir / "out").exists() and not (workdir / "plots").exists()


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("file, change, message", [
    (f"detector/bench/{HOST}/float16.json", lambda d: d.pop("latency_ms_p90"),
     rf"bench/{HOST}/float16.json: 'latency_ms_p90': Field required"),
    ("detector/agreement.json", lambda d: d.pop("int8"), r"agreement.json: missing key 'int8'"),
    ("detector/agreement.json", lambda d: d["int8"].pop("agreement_mAP"),
     r"agreement.json: 'int8.agreement_mAP': Field required"),
    (f"lm/eval/{ORT}", lambda d: d.pop("hits"), rf"{ORT}: missing key 'hits'"),
    (f"lm/eval/{ORT}", lambda d: d["record"].pop("chain"), rf"{ORT}: missing key 'record.chain'"),
    (f"lm/eval/{ORT}", lambda d: d.update(acc="high"), rf"{ORT}: 'acc' is 'high', not a number"),
    (f"lm/bench/{HOST}/{ORT}", lambda d: d.update(decode_tokens_per_s=None), r"'decode_tokens_per_s' is None"),
    (f"lm/bench/{HOST}/{ORT}", lambda d: d.pop("energy_decode"), rf"bench/{HOST}/{ORT}: missing key 'energy_decode'"),
    ("lm/compress/smollm2-135m-prune.json", lambda d: d.pop("compress_energy"), r"missing key 'compress_energy'"),
    (f"lm/bench/{HOST}/{ORT}", lambda d: d["record"]["knobs"].update(precision="int8"), r"its record is not .*eval/"),
    (f"lm/eval/{ORT}", lambda d: d.update(hits=d["hits"][:-1] + "2"), r"'hits' is not one 0/1 character"),
    (f"lm/eval/{ORT}", lambda d: d.update(hits=d["hits"][:-1], agree=d["agree"][:-1], num_examples=19),
     r"scored different examples \(19 vs 20\)"),
    (f"detector/bench/{HOST}/int8.json", lambda d: d["energy_e2e"].update(method="guess"), r"'energy_e2e.method'"),
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


def test_label_positions_keep_close_labels_apart_and_pareto_keeps_undominated_variants():
    from stages.reporting.geometry import pareto, place_labels
    assert place_labels([(0.1, 0.1), (0.5, 0.5)], ["a", "b"]) == ["middle right", "middle right"]
    near = place_labels([(0.50, 0.50), (0.52, 0.50)], ["int8", "int4"])
    assert near != ["middle right", "middle right"]           # the second label moves off the first
    assert place_labels([(0.97, 0.5)], ["a long label"]) == ["middle left"]   # kept inside the axes
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
    args = ["--metrics", workdir / "metrics", "--summary", workdir / "out" / "summary.json",
            "--plots", workdir / "plots", "--params", workdir / "params.yaml"]
    proc = subprocess.run([sys.executable, "-c", CHECK_IMPORTS, *map(str, args)], cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "heavy=[]" in proc.stdout
    assert f"rendering {len(DET_STEMS | LM_STEMS)} PNGs" in proc.stderr and "done in" in proc.stderr
    pngs = sorted((workdir / "plots" / "png").glob("*.png"))
    assert {p.stem for p in pngs} == DET_STEMS | LM_STEMS
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000
               for p in pngs)


def test_headline_files_are_one_small_flat_row_per_variant(workdir, no_png):
    """What `dvc metrics show` prints: a file per variant, a dozen numbers at most, no nesting."""
    run(workdir)
    files = sorted((workdir / "out" / "headline").rglob("*.json"))
    stems = {f.relative_to(workdir / "out" / "headline").with_suffix("").as_posix() for f in files}
    assert stems == {f"lm/{v}" for v in LM_VARIANTS} | {f"detector/{v}" for v in VARIANTS}
    columns = set()
    for f in files:
        doc = json.loads(f.read_text())
        assert len(doc) <= 9 and all(isinstance(v, (int, float)) for v in doc.values()), f
        columns |= set(doc)
    assert len(columns) <= 14
    ort = json.loads((workdir / "out" / "headline" / "lm" / "smollm2-135m-ort-int4.json").read_text())
    assert ort["acc"] == 0.55 and ort["decode_tok_s"] == 150.0 and ort["delta_acc"] == pytest.approx(-0.05)
