"""LAMBADA accuracy of one ONNX Runtime GenAI variant (a folder made by lm_build_ort), with
the project's harness-exact scoring (stages/tasks/lambada.py) on the first
lm_runtimes.limit examples of eval_lm's set, batch 1 with full logits. The scoring loop is
metered (stages/meters/energy.py): energy per example, the session load left out."""
from __future__ import annotations

import argparse
import importlib.metadata
import os
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import dir_size_mb
from stages.datasets.lambada import read_texts
from stages.meters import energy as E
from stages.runtimes import ort_genai_lm as R
from stages.schema import metrics as M, params as P
from stages.tasks import lambada as S
from stages.tasks.intervals import lambada_intervals

PARAMS = ("lm_runtimes.limit", "eval_lm.k", "eval_lm.threads", "bootstrap") + E.PARAMS
VERSIONS = ("onnxruntime", "onnxruntime-genai", "onnx", "onnx-ir")


def describe(name: str) -> dict:
    """runtime / method / bits of a variant name (ort-fp32, ort-int4, ort-gptq-int4, ...)."""
    prec = name.removeprefix("ort-")
    if prec == "fp32":
        return {"runtime": "onnxruntime", "method": "none", "bits": 32}
    if prec.startswith("gptq-int"):
        return {"runtime": "onnxruntime", "method": "gptq", "bits": int(prec[8:])}
    if prec in ("int8", "int4"):
        return {"runtime": "onnxruntime", "method": f"ort-{prec}", "bits": int(prec[3:])}
    raise PipelineError(f"not an ONNX Runtime GenAI variant name: {name!r}")


def discover(folder: Path, variant: str) -> dict[str, Path]:
    """{variant: folder} for one built model, else {variant-int<b>: sub} (widest first)."""
    if (folder / "model.onnx").is_file():
        return {variant: folder}
    subs = sorted((d for d in folder.glob("int*") if (d / "model.onnx").is_file()),
                  key=lambda d: -int(d.name[3:])) if folder.is_dir() else []
    if not subs:
        raise PipelineError(f"no model.onnx nor int<bits>/ subfolders in {folder}")
    return {f"{variant}-{d.name}": d for d in subs}


def versions() -> dict[str, str]:
    return {n: importlib.metadata.version(n) for n in VERSIONS}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--models", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    k, threads, boot = p["eval_lm"]["k"], p["eval_lm"]["threads"], p["bootstrap"]
    R.require(), R.require("onnxruntime")
    texts = read_texts(args.data, p["lm_runtimes"]["limit"])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    meter, rows = E.open_meter(p["energy"]), {}
    for name, folder in discover(args.models, args.variant).items():
        with timed(f"evaluating {name} on {len(texts)} examples"):
            reqs = S.encode_examples(R.tokenizer(folder), texts, R.context_length(folder))
            sess = R.session(folder, threads)
            scores, energy = meter.once(lambda: R.score_all(folder, reqs, k, threads, sess),
                                        len(reqs), "example")
        agg, ci = S.aggregate(scores, k), lambada_intervals(scores, boot["samples"], boot["seed"])
        rows[name] = M.LmRtEval(**describe(name), **{key: agg[key] for key in (
            "acc", "topk_acc", "topk_word_acc", "ppl", "k", "num_examples")},
            acc_ci95=ci["acc_ci95"], ppl_ci95=ci["ppl_ci95"], size_mb=dir_size_mb(folder),
            threads=threads, versions=versions(), energy_eval=energy)
    M.write(args.out, M.LmRtEvalFile(rows))


if __name__ == "__main__":
    run_main(main)
