"""Speed, peak RSS and the bandwidth bound of one ONNX Runtime GenAI variant: a benchmark.

decode tokens/s (batch 1, greedy, exactly bench_lm.decode_tokens new tokens after a
32-token prompt) and prefill tokens/s (bench_lm.prefill_tokens) through og.Generator with
bench_lm.threads intra-op threads, medians over bench_lm.speed_repeats after a warm-up.
Each variant runs in a fresh process, so its peak RSS is its own (load + time).
The machine's triad bandwidth is measured in the same run (stages/meters/bandwidth.py).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from stages.core.errors import run_main, timed
from stages.core.files import dir_size_mb
from stages.datasets.lambada import read_texts
from stages.entry.lm_eval_ort import describe, discover, versions
from stages.meters import bandwidth, energy as E, fresh_process
from stages.meters.machine import record
from stages.runtimes import ort_genai_lm as R
from stages.schema import metrics as M, params as P

PARAMS = ("bench_lm.threads", "bench_lm.decode_tokens", "bench_lm.prefill_tokens",
          "bench_lm.speed_repeats") + E.PARAMS


def timing(folder: str, ids: list[int], cfg: dict, energy: dict) -> dict:
    # the meter opens here: `estimate` counts this process's CPU time, the one that runs
    return R.speeds(Path(folder), ids, cfg, E.open_meter(energy))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--models", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    cfg, energy = p["bench_lm"], p["energy"]   # Tracked: the child's reads come back
    E.open_meter(p["energy"]).close()   # a bad energy param or a missing counter: before any timing
    R.require(), R.require("onnxruntime")
    texts = read_texts(args.data, 0)[:200]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with timed("measuring memory bandwidth (triad)"):
        bw = bandwidth.triad_gb_s()
    rows = {}
    for name, folder in discover(args.models, args.variant).items():
        with timed(f"timing {name}"):
            speed = fresh_process.run(timing, str(folder), R.bench_ids(folder, texts), cfg, energy)
        per_token = R.weight_bytes_per_token(folder)
        rows[name] = M.LmRtBench(
            **describe(name), threads=cfg["threads"], **speed, size_mb=dir_size_mb(folder),
            weight_bytes_per_token=per_token, bandwidth_gb_s=bw,
            bandwidth_fraction=bandwidth.fraction(speed["decode_tokens_per_s"], bw, per_token),
            versions=versions(), machine=record())
    M.write(args.out, M.LmRtBenchFile(rows))


if __name__ == "__main__":
    run_main(main)
