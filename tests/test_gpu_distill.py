"""The GPU results set's distillation table (stages/reporting/gpu_distill.py) on the committed
metrics/gpu/distill files: every run trained on CUDA, its own eval beside its cost, the host-CPU
pruning step never given GPU joules, and the longer runs really longer."""
from __future__ import annotations

from pathlib import Path

import pytest

from stages.core.errors import PipelineError
from stages.reporting import gpu as G, gpu_distill
from tests.test_gpu_report import load_without

GPU = Path(__file__).resolve().parents[1] / "metrics" / "gpu"


def test_distill_runs_trained_on_cuda_and_each_row_is_its_own_eval():
    gpu = G.load(GPU)
    runs = gpu["distill"]
    assert {"prune", "distill-40", "distill-1000", "prune+distill-40", "prune+distill-1000"} <= set(runs)
    for name, r in runs.items():
        if "distill" in name:
            assert r["steps"] == int(name.rsplit("-", 1)[1]) and r["compress_j"] > 0
            assert r["layers"] == (15 if r["method"] == "distill" else 30)
        else:
            assert r["compress_j"] is None   # a host-CPU step: NVML does not meter it
    assert runs["distill-1000"]["tokens"] > 100 * runs["distill-40"]["tokens"]
    body = {line.split(" | ")[0].strip("| "): line for line in gpu_distill.table(gpu)[2:]}
    assert set(body) == {"base", *runs}
    for name, r in runs.items():
        lo, hi = r["acc_ci95"]
        assert f"{r['acc']:.4f} [{lo:.4f}, {hi:.4f}]" in body[name]
        assert lo <= r["acc"] <= hi <= gpu["evals"]["base"]["acc_ci95"][0]   # all below the base


def test_a_distill_eval_without_its_chain_file_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match="no lm_chain file distill-40.json"):
        load_without(tmp_path, "distill/distill-40.json")


def test_the_joined_variants_carry_accuracy_only_where_lm_eval_scored_that_model_and_kernel():
    gpu = G.load(GPU)
    rows = G.variants(gpu)
    assert set(rows) == set(gpu["rows"])
    for name, r in rows.items():
        assert r["device"] == "cuda" and r["energy_method"].startswith("nvml")
        if r["speed_only"]:
            assert r["acc"] is None
    assert rows["smollm2-fp16"]["acc"] == gpu["evals"]["base"]["acc"]
    assert rows["smollm2-int4-gptq_marlin"]["acc"] == gpu["evals"]["int4"]["acc"]
    assert rows["smollm2-int4-gptq_triton"]["acc"] is None   # no lm_eval ran that kernel
