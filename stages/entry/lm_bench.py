"""Speed of the base model or of every GPTQ width on this machine: a benchmark, not a test.

decode tokens/s (batch 1, greedy, exactly bench_lm.decode_tokens new tokens), prefill
tokens/s (one forward over bench_lm.prefill_tokens), and LAMBADA examples/s of the batched
scoring loop over the first bench_lm.score_examples examples (batch eval_lm.batch_size).
Medians after a warm-up; the file records the kernels, the machine and library versions.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from stages.core.errors import run_main, timed
from stages.datasets.lambada import read_texts
from stages.meters.kernel_sweep import sweep
from stages.meters import energy as E
from stages.meters.lm_speed import speeds
from stages.meters.machine import record
from stages.runtimes import torch_lm as R
from stages.schema import metrics as M, params as P
from stages.tasks import lambada as S

PARAMS = ("bench_lm", "eval_lm.backend", "eval_lm.batch_size", "eval_lm.k") + E.PARAMS


def bench(folder: Path, texts: list[str], cfg: dict, ev: dict, meter: E.Meter) -> M.LmBench:
    import torch

    batch_size, k = ev["batch_size"], ev["k"]
    model, tok = R.load(folder, cfg["device"], ev["backend"])
    reqs = S.encode_examples(tok, texts[:cfg["score_examples"]],
                             getattr(model.config, "max_position_embeddings", 2048))
    with torch.inference_mode():
        R.score_all(model, reqs[:batch_size], R.pad_id(tok), batch_size, k)  # warm-up
        t0 = time.perf_counter()
        R.score_all(model, reqs, R.pad_id(tok), batch_size, k)
        seconds = time.perf_counter() - t0
        speed, energy = speeds(model, tok, texts, cfg, meter)
    kernels = R.kernels(model)
    del model
    gptq = R.method_of(folder) == "gptq"   # the sweep times GPTQ kernels (AWQ: its own pick)
    swept = sweep(folder, R.bits_of(folder), texts, cfg, meter) if gptq else {}
    return M.LmBench(device=cfg["device"], threads=cfg["threads"], **speed, **energy,
                     eval_examples_per_s=len(reqs) / seconds, kernels=kernels, sweep=swept,
                     machine=record(gpu=cfg["device"] == "cuda"))


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
    meter = E.open_meter(p["energy"], cfg["device"])
    rows = {}
    for name, folder in variants.items():
        with timed(f"timing {name}"):
            rows[name] = bench(folder, texts, cfg, p["eval_lm"], meter)
    M.write(args.out, M.LmBenchFile(rows))


if __name__ == "__main__":
    run_main(main)
