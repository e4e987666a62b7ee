"""LAMBADA accuracy of one llama.cpp GGUF variant (made by lm_build_gguf), with the project's
harness-exact scoring (stages/tasks/lambada.py) on the first lm_runtimes.limit examples of
eval_lm's set, batch 1 with full logits. The ids are the base folder's HF tokenizer's, as the
PyTorch and ONNX Runtime rows score them (the GGUF's vocabulary must match it). The scoring
loop is metered (stages/meters/energy.py): energy per example, the load left out."""
from __future__ import annotations

import argparse
import importlib.metadata
import os
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import dir_size_mb, require_dir
from stages.datasets.lambada import read_texts
from stages.methods.gguf_build import BITS
from stages.meters import energy as E
from stages.runtimes import llamacpp_lm as R
from stages.schema import metrics as M, params as P
from stages.tasks import lambada as S
from stages.tasks.intervals import lambada_intervals

PARAMS = ("lm_runtimes.limit", "eval_lm.k", "eval_lm.threads", "bootstrap") + E.PARAMS


def describe(kind: str) -> dict:
    """runtime / method / bits of a GGUF type: f16 -> method none, 16 bits; q4_0 -> gguf-q4_0."""
    if kind not in BITS:
        raise PipelineError(f"unknown GGUF variant {kind!r} (known: {', '.join(BITS)})")
    method = "none" if BITS[kind] >= 16 else "gguf-q4_1" if kind == "packaged" else f"gguf-{kind}"
    return {"runtime": "llama.cpp", "method": method, "bits": BITS[kind]}


def versions() -> dict[str, str]:
    return {n: importlib.metadata.version(n) for n in R.VERSIONS}


def tokenizer_for(base: Path, gguf: Path):
    """The base folder's HF tokenizer, after checking the GGUF holds the same vocabulary."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(require_dir(base, "base model folder"))
    vocab = R.vocab_size(gguf)
    if vocab != len(tok):
        raise PipelineError(f"{gguf} has {vocab} tokens, the base tokenizer {len(tok)}: "
                            "not the same model")
    return tok


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--model", "--base", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    k, threads, boot, name = p["eval_lm"]["k"], p["eval_lm"]["threads"], p["bootstrap"], f"llamacpp-{args.variant}"
    desc, _ = describe(args.variant), R.require()
    texts = read_texts(args.data, p["lm_runtimes"]["limit"])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    meter = E.open_meter(p["energy"])
    with timed(f"evaluating {name} on {len(texts)} examples"):
        reqs = S.encode_examples(tokenizer_for(args.base, args.model), texts, R.context_length(args.model))
        llm = R.load(args.model, threads, R.n_ctx_for(reqs), logits_all=True)
        scores, energy = meter.once(lambda: R.score_all(llm, reqs, k), len(reqs), "example")
    agg, ci = S.aggregate(scores, k), lambada_intervals(scores, boot["samples"], boot["seed"])
    row = M.LmRtEval(**desc, **{key: agg[key] for key in (
        "acc", "topk_acc", "topk_word_acc", "ppl", "k", "num_examples")},
        acc_ci95=ci["acc_ci95"], ppl_ci95=ci["ppl_ci95"], size_mb=dir_size_mb(args.model),
        threads=threads, versions=versions(), energy_eval=energy)
    M.write(args.out, M.LmRtEvalFile({name: row}))


if __name__ == "__main__":
    run_main(main)
