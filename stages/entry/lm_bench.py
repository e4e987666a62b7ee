"""Speed of the base model or of every GPTQ width on this machine: a benchmark, not a test.

decode tokens/s (batch 1, greedy, exactly bench_lm.decode_tokens new tokens), prefill
tokens/s (one forward over bench_lm.prefill_tokens), and LAMBADA examples/s of the batched
scoring loop over the first bench_lm.score_examples examples (batch eval_lm.batch_size).
Medians after a warm-up; the file records the kernels, the machine and library versions.
Each variant is timed in a fresh process (its peak RSS is its own: load, score, time), and the
machine's triad bandwidth is measured in the same run, for the bound (README "Bandwidth").
The kernel sweep (other kernels of a width) runs afterwards in this process.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from stages.core.errors import run_main, timed
from stages.datasets.lambada import read_texts
from stages.meters.kernel_sweep import sweep
from stages.meters import bandwidth, energy as E, fresh_process
from stages.meters.lm_speed import speeds
from stages.meters.machine import record
from stages.runtimes import torch_lm as R
from stages.schema import metrics as M, params as P
from stages.tasks import lambada as S

PARAMS = ("bench_lm", "eval_lm.backend", "eval_lm.batch_size", "eval_lm.k") + E.PARAMS


def bench(folder: str, texts: list[str], cfg: dict, ev: dict, energy: dict) -> dict:
    """One variant's speed, in the process that runs it (fresh_process: its peak RSS)."""
    import torch

    R.setup(cfg["device"], cfg["threads"], "bench_lm.device")
    # the meter opens here: `estimate` counts this (fresh) process's CPU time, the one that runs
    meter = E.open_meter(energy, cfg["device"])
    batch_size, k = ev["batch_size"], ev["k"]
    model, tok = R.load(Path(folder), cfg["device"], ev["backend"])
    reqs = S.encode_examples(tok, texts[:cfg["score_examples"]],
                             getattr(model.config, "max_position_embeddings", 2048))
    with torch.inference_mode():
        R.score_all(model, reqs[:batch_size], R.pad_id(tok), batch_size, k)  # warm-up
        t0 = time.perf_counter()
        R.score_all(model, reqs, R.pad_id(tok), batch_size, k)
        seconds = time.perf_counter() - t0
        speed, energy_fig = speeds(model, tok, texts, cfg, meter)
    # every weight a decode step reads: all in memory (the tied embedding once, as the LM head)
    return {**speed, **energy_fig, "eval_examples_per_s": len(reqs) / seconds,
            "kernels": R.kernels(model), "weight_bytes_per_token": int(R.param_mb(model) * 1e6)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--models", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    cfg = p["bench_lm"]
    variants = R.discover(args.models)
    texts = read_texts(args.data, 0)
    R.setup(cfg["device"], cfg["threads"], "bench_lm.device")
    meter = E.open_meter(p["energy"], cfg["device"])   # a bad energy param: before any timing
    with timed("measuring memory bandwidth (triad)"):
        bw = bandwidth.triad_gb_s()
    rows = {}
    for name, folder in variants.items():
        with timed(f"timing {name}"):
            row = fresh_process.run(bench, str(folder), texts, cfg, p["eval_lm"], p["energy"])
        # the sweep times GPTQ kernels (AWQ: its own pick), here: the row's RSS stays its own
        gptq = R.method_of(folder) == "gptq"
        swept = sweep(folder, R.bits_of(folder), texts, cfg, meter) if gptq else {}
        rows[name] = M.LmBench(
            device=cfg["device"], threads=cfg["threads"], **row, sweep=swept, bandwidth_gb_s=bw,
            bandwidth_fraction=bandwidth.fraction(row["decode_tokens_per_s"], bw,
                                                  row["weight_bytes_per_token"]),
            machine=record(gpu=cfg["device"] == "cuda"))
    M.write(args.out, M.LmBenchFile(rows))


if __name__ == "__main__":
    run_main(main)
