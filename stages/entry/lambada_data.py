"""LAMBADA evaluation set (eval.jsonl) and disjoint calibration text (calib.jsonl).

Sources (lambada.source), one module each in stages/datasets/: offline (a LAMBADA-style
last-word set built from BBC News articles), local (a LAMBADA JSONL read in place), official
(OpenAI's lambada_test.jsonl, checksummed). Calibration always comes from BBC articles
reserved for it; an article sharing a 13-word window with any evaluated text is dropped.
The seeded shuffle fixes the reserved pool (lambada.calib_pool) first, and calibration takes
the first calib_articles of it: changing calib_articles never moves the evaluation set.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from stages.core.errors import PipelineError, log, run_main, timed
from stages.core.files import atomic_path
from stages.datasets.lambada import check_disjoint, overlapping, source_module
from stages.datasets.lambada_offline import bbc_articles, corpus_root
from stages.schema import params as P

PARAMS = ("seed", "lambada")


def check_size(evals: list[dict], minimum: int, source: str) -> None:
    """Too few examples is an error; a repeated example is a loud warning, not an error: the
    official LAMBADA file itself repeats 2 of its 5,153 passages, and lm-evaluation-harness
    scores all of them, so comparable numbers keep them."""
    if len(evals) < minimum:
        raise PipelineError(f"lambada ({source}): {len(evals)} evaluation examples, fewer than "
                            f"lambada.min_examples ({minimum})")
    first: dict[str, str] = {}
    repeats = [(r["id"], first.setdefault(" ".join(r["text"].lower().split()), r["id"])) for r in evals]
    repeats = [(a, b) for a, b in repeats if a != b]
    if repeats:
        log.warning("lambada (%s): %d of %d evaluation examples repeat an earlier one (first: %s = %s); "
                    "they are kept and scored, as lm-evaluation-harness does", source, len(repeats),
                    len(evals), *repeats[0])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--downloads", default="data/.cache/lambada", type=Path)  # resumable
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    cfg, seed = p["lambada"], p["seed"]
    with timed("reading BBC articles"):
        articles = bbc_articles(corpus_root())
    ids = sorted(articles)
    if cfg["calib_pool"] >= len(ids):
        raise PipelineError(f"lambada.calib_pool: {cfg['calib_pool']} reserved articles leave none to "
                            f"evaluate: the BBC corpus has {len(ids)}")
    random.Random(seed).shuffle(ids)
    pool, eval_ids = ids[:cfg["calib_pool"]], sorted(ids[cfg["calib_pool"]:])
    calib_ids = sorted(pool[:cfg["calib_articles"]])
    with timed(f"building the {cfg['source']} evaluation set"):
        evals = source_module(cfg["source"]).build(cfg, articles, eval_ids, seed, args.downloads)
    check_size(evals, cfg["min_examples"], cfg["source"])
    calib = [{"text": "\n".join(articles[a]), "id": f"bbc:{a}"} for a in calib_ids]
    leaks = overlapping(calib, evals)
    kept = [c for c in calib if c["id"] not in leaks]
    check_disjoint(kept, evals)
    log.info("%d evaluation examples; %d calibration articles (%d dropped as overlapping)",
             len(evals), len(kept), len(calib) - len(kept))
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        for name, recs in [("eval.jsonl", evals), ("calib.jsonl", kept)]:
            (tmp / name).write_text("".join(json.dumps(r) + "\n" for r in recs))


if __name__ == "__main__":
    run_main(main)
