"""Speed, peak RSS and the bandwidth bound of one OpenVINO variant: a benchmark, with the
protocol of lm_bench / lm_bench_ort / lm_bench_gguf (decode: exactly bench_lm.decode_tokens
greedy tokens after a 32-token prompt, batch 1; prefill: one forward over
bench_lm.prefill_tokens; medians of bench_lm.speed_repeats after a warm-up; bench_lm.threads
inference threads), in a fresh process (its peak RSS), the triad bandwidth in the same run.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from stages.core.errors import run_main, timed
from stages.core.files import dir_size_mb
from stages.datasets.lambada import read_texts
from stages.entry.lm_eval_ov import describe, versions
from stages.meters import bandwidth, energy as E, fresh_process
from stages.meters.machine import record
from stages.runtimes import openvino_lm as R
from stages.runtimes.ort_genai_lm import bench_ids
from stages.schema import metrics as M, params as P

PARAMS = ("bench_lm.threads", "bench_lm.decode_tokens", "bench_lm.prefill_tokens",
          "bench_lm.speed_repeats") + E.PARAMS


def timing(folder: str, ids: list[int], cfg: dict, energy: dict) -> dict:
    # the meter opens here: `estimate` counts this (fresh) process's CPU time, the one that runs
    return R.speeds(Path(folder), ids, cfg, E.open_meter(energy))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--models", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    cfg, energy, name = p["bench_lm"], p["energy"], f"ov-{args.variant}"
    E.open_meter(p["energy"]).close()   # a bad energy param or a missing counter: before any timing
    desc, _ = describe(args.variant), R.require()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ids = bench_ids(args.models, read_texts(args.data, 0)[:200])
    with timed("measuring memory bandwidth (triad)"):
        bw = bandwidth.triad_gb_s()
    with timed(f"timing {name}"):
        speed = fresh_process.run(timing, str(args.models), ids, cfg, energy)
    per_token = R.weight_bytes_per_token(args.models)
    row = M.LmRtBench(
        **desc, threads=cfg["threads"], **speed, size_mb=dir_size_mb(args.models),
        weight_bytes_per_token=per_token, bandwidth_gb_s=bw,
        bandwidth_fraction=bandwidth.fraction(speed["decode_tokens_per_s"], bw, per_token),
        versions=versions(), machine=record())
    M.write(args.out, M.LmRtBenchFile({name: row}))


if __name__ == "__main__":
    run_main(main)
