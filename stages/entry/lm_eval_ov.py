"""LAMBADA accuracy of one OpenVINO variant (a folder made by lm_build_ov), with the project's
harness-exact scoring (stages/tasks/lambada.py) on the first lm_runtimes.limit examples of
eval_lm's set, batch 1 with full logits (one forward per example, empty KV cache). The scoring
loop is metered (stages/meters/energy.py): energy per example, the compile left out."""
from __future__ import annotations

import argparse
import importlib.metadata
import os
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import dir_size_mb
from stages.datasets.lambada import read_texts
from stages.meters import energy as E
from stages.runtimes import openvino_lm as R
from stages.runtimes.ort_genai_lm import tokenizer
from stages.schema import metrics as M, params as P
from stages.tasks import lambada as S
from stages.tasks.intervals import lambada_intervals

PARAMS = ("lm_runtimes.limit", "eval_lm.k", "eval_lm.threads", "bootstrap") + E.PARAMS
BITS = {"fp32": 32, "int8": 8, "int4": 4}


def describe(precision: str) -> dict:
    """runtime / method / bits: fp32 -> none, 32; int4 -> nncf-int4, 4."""
    if precision not in BITS:
        raise PipelineError(f"unknown OpenVINO precision {precision!r} (known: {', '.join(BITS)})")
    return {"runtime": "openvino", "method": "none" if precision == "fp32" else f"nncf-{precision}",
            "bits": BITS[precision]}


def versions() -> dict[str, str]:
    return {n: importlib.metadata.version(n) for n in R.VERSIONS}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--models", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    k, threads, boot, name = p["eval_lm"]["k"], p["eval_lm"]["threads"], p["bootstrap"], f"ov-{args.variant}"
    desc, _ = describe(args.variant), R.require()
    texts = read_texts(args.data, p["lm_runtimes"]["limit"])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    meter = E.open_meter(p["energy"])
    with timed(f"evaluating {name} on {len(texts)} examples"):
        reqs = S.encode_examples(tokenizer(args.models), texts, R.context_length(args.models))
        cm, setting = R.compile_model(args.models, threads)
        scores, energy = meter.once(lambda: R.score_all(args.models, reqs, k, threads, cm), len(reqs), "example")
    agg, ci = S.aggregate(scores, k), lambada_intervals(scores, boot["samples"], boot["seed"])
    row = M.LmRtEval(**desc, **{key: agg[key] for key in (
        "acc", "topk_acc", "topk_word_acc", "ppl", "k", "num_examples")},
        acc_ci95=ci["acc_ci95"], ppl_ci95=ci["ppl_ci95"], size_mb=dir_size_mb(args.models),
        threads=threads, versions=versions(), runtime_config=setting, energy_eval=energy)
    M.write(args.out, M.LmRtEvalFile({name: row}))


if __name__ == "__main__":
    run_main(main)
