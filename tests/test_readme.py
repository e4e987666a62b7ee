"""The README's results block is generated from the committed metrics, never hand-typed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stages.reporting import lm, lm_render
from stages.reporting.readme import END, START, render, replace_block
from tests.metric_fixtures import write_lm

ROOT = Path(__file__).resolve().parents[1]


def test_readme_results_block_matches_the_committed_summary():
    summary = ROOT / "metrics" / "summary.json"
    if not summary.exists():
        pytest.skip("no committed metrics/summary.json yet")
    data = json.loads(summary.read_text())
    if "lm" not in data:
        pytest.skip("the committed metrics/summary.json predates the LM records (no `lm` section): "
                    "rerun aggregate, then python -m stages.entry.readme")
    k = yaml.safe_load((ROOT / "params.yaml").read_text())["eval_lm"]["k"]
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(START):readme.index(END) + len(END)]
    assert block == render(data, k), \
        "README results differ from metrics/summary.json: run python -m stages.entry.readme"


def test_readme_quickstart_times_are_the_committed_measurements():
    from stages.entry.readme import stage_names
    from stages.reporting.readme import QUICK_END, QUICK_START, render_quickstart

    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(QUICK_START):readme.index(QUICK_END) + len(QUICK_END)]
    run_time = json.loads((ROOT / "metrics" / "run_time.json").read_text())
    assert block == render_quickstart(run_time, stage_names()), \
        "README quick start differs from metrics/run_time.json: run python -m stages.entry.readme"


def test_quickstart_sums_the_measured_stages_and_says_which_are_not():
    from stages.reporting.readme import render_quickstart

    times = {"stages": {"a": {"seconds": 3000, "cpu": "X", "cores": 2},
                        "b": {"seconds": 1800, "cpu": "X", "cores": 2}}, "tests": {"seconds": 600}}
    text = render_quickstart(times, ["a", "b"])
    assert "offline default: 1 h 20 min" in text and "the tests: 10 min" in text and "X, 2 cores" in text
    assert "1 of the 3 stages ran before times were recorded" in render_quickstart(times, ["a", "b", "c"])
    with pytest.raises(ValueError, match="times none of"):
        render_quickstart(times, ["c"])
    times["stages"]["lm_quant@m-gptq"] = {"seconds": 1300, "cpu": "X", "cores": 2}
    text = render_quickstart(times, ["a", "b", "lm_quant@m-gptq"])
    assert "Stages over 10 minutes: `a` 50 min (no documented reason); `b` 30 min (no documented " \
           "reason); `lm_quant@m-gptq` 22 min (GPTQ at every" in text
    # a timed fresh clone gives set-up, the quick profile and the tests (over the older "tests")
    times["fresh_clone"] = {"commit": "abcdef123", "cpu": "Y", "cores": 2, "setup": {"seconds": 540},
                            "quick": {"seconds": 720}, "tests": {"seconds": 1500, "summary": "7 passed"}}
    text = render_quickstart(times, ["a", "b"])
    assert "pinned wheels): 9 min" in text and "a first look (below): 12 min" in text
    assert "the tests: 25 min" in text and "commit abcdef1, Y, 2 cores" in text and "7 passed" in text


def test_render_shows_intervals_one_table_per_model_and_replace_keeps_the_rest(tmp_path):
    rows = lm.load(write_lm(tmp_path), 1000, 0)
    summary = {"detector": {"int8": {"agreement_mAP": 0.9, "agreement_mAP_ci95": [0.85, 0.95],
                                     "AP": None, "AP50": None, "latency_ms_median": 6.7,
                                     "images_per_s": 98.0, "size_mb": 17.5}},
               "lm": json.loads(json.dumps(lm_render.summary(rows)))}   # as read back from summary.json
    block = render(summary, 5)
    assert "| `int8` | 90.0 [85.0, 95.0] | n/a |" in block
    tables = block.split("Language model `")[1:]
    assert [t.split("`")[0] for t in tables] == ["gemma3-270m", "smollm2-135m"]   # one table per model
    for table in tables:
        model = table.split("`")[0]
        assert "timed on Test CPU 9000" in table and table.count("| variant | bits |") == 1
        shown = [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ")][1:]
        assert shown == [r["variant"] for r in sorted((r for r in rows.values() if r["model"] == model),
                                                      key=lambda r: -r["acc"])]   # best accuracy first
    (pruned,) = [line for line in block.splitlines() if line.startswith("| prune 50%+gptq-int4 · pytorch |")]
    lo, hi = rows["smollm2-135m-prune+gptq4-pytorch"]["delta_acc_ci95"]
    assert pruned.startswith("| prune 50%+gptq-int4 · pytorch | 4 | 113 | 30.0 [")
    agree, kl = (rows["smollm2-135m-prune+gptq4-pytorch"][k] for k in ("agreement", "kl_mean"))
    assert (agree, kl) == (0.7, pytest.approx(0.15))   # 6 of 20 top-1 words differ, 0.5 nats each
    assert f"| -30.0 [{100 * lo:+.1f}, {100 * hi:+.1f}] | 70.0 | 0.15 | 12.5 | 0.42× | less accurate, dominated |" in pruned
    new = replace_block(f"intro\n{START}\nold\n{END}\noutro", block)
    assert new.startswith("intro\n") and new.endswith("\noutro") and "old" not in new


def test_readme_gpu_block_matches_the_committed_gpu_files():
    from stages.reporting import gpu
    from stages.reporting.readme import GPU_END, GPU_START, render_gpu

    page = (ROOT / "docs" / "gpu.md").read_text()   # the GPU set's own page
    block = page[page.index(GPU_START):page.index(GPU_END) + len(GPU_END)]
    assert block == render_gpu(gpu.load(ROOT / "metrics" / "gpu")), \
        "docs/gpu.md GPU block differs from metrics/gpu: run python -m stages.entry.readme"


def test_readme_classifier_block_matches_the_committed_rows():
    from stages.reporting.readme import CLS_END, CLS_START, render_cls

    text = (ROOT / "README.md").read_text()
    block = text[text.index(CLS_START):text.index(CLS_END) + len(CLS_END)]
    rows = json.loads((ROOT / "plots" / "cls" / "variants.json").read_text())
    assert block == render_cls(rows), "README classifier block differs: run python -m stages.entry.readme"
    assert "| `fp32-pytorch` |" in block and "Goal:" in block


def test_readme_entry_writes_both_blocks_and_refuses_an_old_summary(tmp_path):
    from stages.core.errors import PipelineError
    from stages.entry import readme as entry
    from stages.reporting.readme import GPU_END, GPU_START

    summary = {"detector": {}, "lm": json.loads(json.dumps(lm_render.summary(lm.load(write_lm(tmp_path), 1000, 0))))}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "README.md").write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    (tmp_path / "gpu.md").write_text(f"gpu intro\n{GPU_START}\nstale\n{GPU_END}\n")
    args = ["--readme", str(tmp_path / "README.md"), "--summary", str(tmp_path / "summary.json"),
            "--params", str(ROOT / "params.yaml"), "--gpu-doc", str(tmp_path / "gpu.md"),
            "--run-time", str(tmp_path / "no_run_time.json"),   # none: the quick start is left as it is
            "--cls", str(tmp_path / "no_variants.json")]         # none: the classifier block too
    entry.main(args)
    k = yaml.safe_load((ROOT / "params.yaml").read_text())["eval_lm"]["k"]
    assert (tmp_path / "README.md").read_text() == f"intro\n{render(summary, k)}\noutro\n"
    page = (tmp_path / "gpu.md").read_text()
    assert page.startswith("gpu intro\n") and "\nstale\n" not in page and "| variant | host | kernels |" in page
    (tmp_path / "summary.json").write_text(json.dumps({"detector": {}, "llm": {}}))
    with pytest.raises(PipelineError, match="no 'lm' section"):
        entry.main(args)
