"""A model's reference distributions: its base (the float32 Hugging Face folder lm_source wrote)
run on PyTorch, the runtime of every paired comparison's reference, over the examples lm_eval
scores. It stores the log-probabilities of every scored position (data/lm/reference/<model>.npz,
stages/tasks/fidelity.py), which each variant's lm_eval compares its own with (top-1 agreement,
KL divergence), as llama.cpp's `perplexity --kl-divergence-base` stores its base's logits.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import atomic_path, require_dir
from stages.datasets.lambada import read_texts
from stages.models import lm_record
from stages.schema.load import load_sections
from stages.schema.lm_protocol import EvalLm
from stages.tasks import fidelity as F
from stages.tasks.scoring import encode, score_session

PARAMS = ("eval_lm",)
RUNTIME = "pytorch"   # the reference runtime (reporting.lm.reference: base, PyTorch, fp32)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--node", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    cfg = load_sections(args.params, PARAMS, {"eval_lm": EvalLm})["eval_lm"]
    require_dir(args.node, "model base folder")
    record = lm_record.read(args.node)
    if record.get("chain"):
        raise PipelineError(f"{args.node} is a compressed node, not a model's base: the reference is the base")
    if args.out.name != f"{record['model']}.npz":
        raise PipelineError(f"--out {args.out} must be named after its model: {record['model']}.npz")
    texts = read_texts(args.data, cfg["limit"])
    from stages.runtimes import lm as runtimes
    from stages.runtimes.lm.base import context_length, tokenizer

    reqs = encode(tokenizer(args.node), texts, context_length(args.node))
    session = runtimes.get(RUNTIME).open(args.node, cfg["threads"], {})
    logps, digests = [], []

    def keep(i, ids, logits):
        logps.append(F.log_softmax(logits))
        digests.append(F.ids_digest(ids))

    with timed(f"reference rows of {record['model']} ({RUNTIME} fp32) on {len(reqs)} examples"):
        score_session(session, reqs, cfg["k"], keep)
    with atomic_path(args.out) as tmp:
        F.save(tmp, logps, digests)


if __name__ == "__main__":
    run_main(main)
