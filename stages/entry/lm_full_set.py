"""One built variant scored on every example of an evaluation file (the official LAMBADA at
lambada.local_path by default) through its own runtime, paired against the base rows of an
int4 frontier file (stages/entry/lm_int4_frontier.py) on the same examples. This is how a
runtime-only int4 type, such as llama.cpp's q4_1, joins the frontier's question: how much of
the base's official-set accuracy does an int4 model keep?

    dvc repro lm_build@smollm2-135m-llamacpp-q4_1
    python -m stages.entry.lm_full_set --build models/lm/builds/smollm2-135m-llamacpp-q4_1

Scoring is the pipeline's (stages/tasks/scoring.py: batch 1 through the runtime's Session, the
harness's rule); the base it is paired with was scored by the frontier run (its device and
dtype are copied into the output, so a reader sees both). An analysis, not a stage: on a
2-core CPU the 5,153 official examples take about half an hour per variant.
Writes metrics/lm/int4_frontier/runtimes/<variant>.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from stages.core.errors import PipelineError, log, run_main, timed
from stages.core.files import dir_size_mb, read_json, require_dir, sha256_file, write_json
from stages.datasets.lambada import read_jsonl
from stages.entry import lm_int4_frontier as F
from stages.meters.machine import record as machine
from stages.methods.int4_recipes import SEED   # the frontier's bootstrap seed (F.SAMPLES: its resamples)
from stages.models import lm_record
from stages.schema.load import load_sections
from stages.schema.params_lm import Lambada
from stages.tasks import lambada as S
from stages.tasks.intervals import lambada_intervals
from stages.tasks.scoring import encode, score_session


def against(frontier: dict, eval_file: Path, n: int) -> dict:
    """The frontier's base row, after checking it was scored on the same file and count."""
    if frontier["eval_file"] != eval_file.name or frontier["num_examples"] != n:
        raise PipelineError(f"the frontier scored {frontier['num_examples']} examples of "
                            f"{frontier['eval_file']}, this run {n} of {eval_file.name}: not paired")
    return frontier["rows"]["base"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", type=Path, required=True, help="a built variant folder (lm_build's output)")
    ap.add_argument("--frontier", type=Path, help="default metrics/lm/int4_frontier/<model>.json")
    ap.add_argument("--eval", type=Path, help="evaluation JSONL (default lambada.local_path)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="score the first N examples (0: all)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, help="default metrics/lm/int4_frontier/runtimes/<variant>.json")
    args = ap.parse_args(argv)
    from stages.runtimes import lm as runtimes
    from stages.runtimes.lm.base import context_length, tokenizer

    build = require_dir(args.build, "built variant folder")
    rec = lm_record.read(build)
    frontier = read_json(args.frontier or Path("metrics/lm/int4_frontier") / f"{rec['model']}.json", "frontier file")
    if args.eval is None:   # the official set a `lambada.source: local` run reads
        args.eval = Path(load_sections(args.params, ("lambada",), {"lambada": Lambada})["lambada"]["local_path"])
    texts = [r["text"] for r in read_jsonl(args.eval, "evaluation file")][:args.limit or None]
    base = against(frontier, args.eval, len(texts))   # before any heavy work
    runtime = runtimes.get(rec["runtime"])
    session = runtime.open(build, args.threads, rec["knobs"])
    reqs = encode(tokenizer(build), texts, context_length(build))
    with timed(f"scoring {lm_record.name(rec)} on {len(reqs)} examples"):
        t0 = time.perf_counter()
        scores = score_session(session, reqs, F.K)
        seconds = time.perf_counter() - t0
    hits = "".join("1" if s["greedy"] else "0" for s in scores)
    row = {"record": rec, **S.aggregate(scores, F.K), **lambada_intervals(scores, F.SAMPLES, SEED), "hits": hits}
    F.paired(row, base)   # the frontier's own rule: paired difference and share of the base kept
    doc = {"variant": build.name, "name": lm_record.name(rec), "eval_file": args.eval.name,
           "eval_sha256": sha256_file(args.eval), "num_examples": len(reqs),
           "base": {k: base[k] for k in ("acc", "size_mb")} | {k: frontier[k] for k in ("device", "dtype", "gpu")},
           "size_mb": dir_size_mb(build), "threads": args.threads, "scoring_seconds": seconds,
           "host": machine(), "versions": runtime.versions(), **row}
    out = args.out or Path("metrics/lm/int4_frontier/runtimes") / f"{build.name}.json"
    write_json(out, doc)
    log.info(f"{doc['name']}: acc {row['acc']:.4f} = {row['fraction_of_base']:.3f} of the base, paired "
             f"{100 * row['delta_acc']:+.2f} pt {[round(100 * x, 2) for x in row['delta_acc_ci95']]}; wrote {out}")


if __name__ == "__main__":
    run_main(main)
