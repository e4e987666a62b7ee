"""LAMBADA accuracy (lm-evaluation-harness `lambada_openai`: acc, top-k, perplexity, each with
a 95% bootstrap interval) of the base model or of every GPTQ width.

--models is one HF model folder (variant "base") or a folder of int<bits>/ subfolders.
Deterministic and independent of batch size; speed is measured by lm_bench.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import run_main, timed
from stages.core.files import dir_size_mb
from stages.core.numerics import pin_cpu_numerics
from stages.datasets.lambada import read_texts
from stages.meters import energy as E
from stages.runtimes import torch_lm as R
from stages.schema import metrics as M, params as P
from stages.tasks import lambada as S
from stages.tasks.intervals import lambada_intervals

PARAMS = ("eval_lm", "bootstrap") + E.PARAMS


def evaluate(folder: Path, texts: list[str], cfg: dict, boot: dict, meter: E.Meter,
             naive: bool = False) -> M.LmEval:
    """Scores and their intervals; with a meter, the energy of the scoring loop per example."""
    import torch

    model, tok = R.load(folder, cfg["device"], cfg["backend"])
    reqs = S.encode_examples(tok, texts, getattr(model.config, "max_position_embeddings", 2048))
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        scores, energy = meter.once(lambda: R.score_all(model, reqs, R.pad_id(tok), cfg["batch_size"],
                                                        cfg["k"], naive), len(reqs), "example", sync)
    return M.LmEval(**S.aggregate(scores, cfg["k"]),
                    **lambada_intervals(scores, boot["samples"], boot["seed"]),
                    bits=R.bits(model), size_mb=dir_size_mb(folder), param_mb=R.param_mb(model),
                    kernels=R.kernels(model), energy_eval=energy)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--models", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--naive", action="store_true", help="batch-1 loop, full logits (baseline)")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    cfg = p["eval_lm"]
    variants = R.discover(args.models)
    texts = read_texts(args.data, cfg["limit"])
    pin_cpu_numerics(cfg["threads"])  # accuracy must not depend on the CPU's kernel paths
    R.setup(cfg["device"], cfg["threads"], "eval_lm.device")
    meter = E.open_meter(p["energy"], cfg["device"])
    rows = {}
    for name, folder in variants.items():
        with timed(f"evaluating {name} on {len(texts)} examples"):
            rows[name] = evaluate(folder, texts, cfg, p["bootstrap"], meter, args.naive)
    M.write(args.out, M.LmEvalFile(rows))


if __name__ == "__main__":
    run_main(main)
