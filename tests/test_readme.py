"""The README's results block is generated from the committed metrics, never hand-typed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stages.reporting.readme import END, START, render, replace_block

ROOT = Path(__file__).resolve().parents[1]


def test_readme_results_block_matches_the_committed_summary():
    summary = ROOT / "metrics" / "summary.json"
    if not summary.exists():
        pytest.skip("no committed metrics/summary.json yet")
    k = yaml.safe_load((ROOT / "params.yaml").read_text())["eval_lm"]["k"]
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(START):readme.index(END) + len(END)]
    assert block == render(json.loads(summary.read_text()), k), \
        "README results differ from metrics/summary.json: run python -m stages.entry.readme"


def test_render_shows_intervals_and_replace_keeps_the_rest():
    summary = {"detector": {"int8": {"agreement_mAP": 0.9, "agreement_mAP_ci95": [0.85, 0.95],
                                     "AP": None, "AP50": None, "latency_ms_median": 6.7,
                                     "images_per_s": 98.0, "size_mb": 17.5}},
               "llm": {"int4": {"acc": 0.38, "acc_ci95": [0.34, 0.42], "topk_acc": 0.6,
                                "topk_acc_ci95": [0.55, 0.65], "ppl": 20.0, "ppl_ci95": [18.0, 23.0],
                                "decode_tokens_per_s": 25.0, "prefill_tokens_per_s": 400.0,
                                "size_mb": 118.0, "compress_time_s": 150.0}}}
    block = render(summary, 5)
    assert "| `int8` | 90.0 [85.0, 95.0] | n/a |" in block and "38.0 [34.0, 42.0]" in block
    new = replace_block(f"intro\n{START}\nold\n{END}\noutro", block)
    assert new.startswith("intro\n") and new.endswith("\noutro") and "old" not in new


def test_readme_gpu_block_matches_the_committed_gpu_files():
    from stages.reporting import gpu
    from stages.reporting.readme import GPU_END, GPU_START, render_gpu

    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(GPU_START):readme.index(GPU_END) + len(GPU_END)]
    assert block == render_gpu(gpu.load(ROOT / "metrics" / "gpu")), \
        "README GPU block differs from metrics/gpu: run python -m stages.entry.readme"
