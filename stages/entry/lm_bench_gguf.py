"""Speed, peak RSS and the bandwidth bound of one llama.cpp GGUF variant: a benchmark.

The same protocol as lm_bench / lm_bench_ort: decode tokens/s (batch 1, greedy, exactly
bench_lm.decode_tokens new tokens after a 32-token prompt, Llama.generate) and prefill
tokens/s (one Llama.eval over bench_lm.prefill_tokens) with bench_lm.threads threads,
medians over bench_lm.speed_repeats after a warm-up, in a fresh process (its peak RSS is this
variant's own). The machine's triad bandwidth is measured in the same run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import run_main, timed
from stages.core.files import dir_size_mb
from stages.datasets.lambada import read_texts
from stages.entry.lm_eval_gguf import describe, tokenizer_for, versions
from stages.meters import bandwidth, energy as E, fresh_process
from stages.meters.machine import record
from stages.runtimes import llamacpp_lm as R
from stages.schema import metrics as M, params as P

PARAMS = ("bench_lm.threads", "bench_lm.decode_tokens", "bench_lm.prefill_tokens",
          "bench_lm.speed_repeats") + E.PARAMS


def timing(path: str, ids: list[int], cfg: dict, energy: dict) -> dict:
    # the meter opens here: `estimate` counts this (fresh) process's CPU time, the one that runs
    return R.speeds(Path(path), ids, cfg, E.open_meter(energy))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--model", "--base", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    cfg, energy, name = p["bench_lm"], p["energy"], f"llamacpp-{args.variant}"
    E.open_meter(p["energy"]).close()   # a bad energy param or a missing counter: before any timing
    desc, _ = describe(args.variant), R.require()
    texts = read_texts(args.data, 0)[:200]
    ids = tokenizer_for(args.base, args.model)("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    with timed("measuring memory bandwidth (triad)"):
        bw = bandwidth.triad_gb_s()
    with timed(f"timing {name}"):
        speed = fresh_process.run(timing, str(args.model), ids, cfg, energy)
    per_token = R.weight_bytes_per_token(args.model)
    row = M.LmRtBench(
        **desc, threads=cfg["threads"], **speed, size_mb=dir_size_mb(args.model),
        weight_bytes_per_token=per_token, bandwidth_gb_s=bw,
        bandwidth_fraction=bandwidth.fraction(speed["decode_tokens_per_s"], bw, per_token),
        versions=versions(), machine=record())
    M.write(args.out, M.LmRtBenchFile({name: row}))


if __name__ == "__main__":
    run_main(main)
