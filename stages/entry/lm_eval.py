"""LAMBADA accuracy of one built variant, as lm-evaluation-harness `lambada_openai` scores that
model (its tokenizer's own special-token rule: a BOS for Gemma, none for SmolLM2): acc, top-k and
perplexity with 95% bootstrap intervals, on the first eval_lm.limit examples, batch 1, through
the runtime's Session (stages/tasks/scoring.py). Every variant scores the same examples, and the
per-example hits are kept, so the report compares variants paired. The scoring loop is metered.
Fidelity to the model's reference (stages/tasks/fidelity.py): top-1 agreement and the KL
divergence of the next-token distributions on the same scored positions, against the rows the
lm_reference stage stored (data/lm/reference/<model>.npz).
Scoring sets the thread count and nothing else: accuracy does not depend on the kernel path
(tests/test_scoring_determinism.py), so the runtime runs the code a deployment would.
A quant sweep folder (int<bits>/ subfolders) is scored width by width: <out>/int<bits>.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import atomic_path, require_dir, write_json
from stages.datasets.lambada import read_texts
from stages.meters import energy as E
from stages.models import lm_record
from stages.schema.common import Bootstrap, Energy
from stages.schema.load import load_sections
from stages.schema.lm_protocol import EvalLm
from stages.tasks import fidelity as F
from stages.tasks import lambada as S
from stages.tasks.intervals import bootstrap, lambada_intervals
from stages.tasks.scoring import encode, score_session

PARAMS = ("eval_lm", "bootstrap") + E.PARAMS


def evaluate(build: Path, reqs_for, cfg: dict, boot: dict, meter, reference: Path) -> dict:
    """One artifact's scores, intervals, per-example hits and fidelity to the reference."""
    from stages.runtimes import lm as runtimes

    record = lm_record.read(build)
    ref = F.Reference(reference / f"{record['model']}.npz")
    session = runtimes.get(record["runtime"]).open(build, cfg["threads"], record["knobs"])
    reqs = reqs_for(build)
    if len(ref) != len(reqs):
        raise PipelineError(f"{ref.path} holds {len(ref)} examples, {build} is scored on {len(reqs)}: "
                            "re-run its lm_reference stage (the same eval_lm.limit)")
    kl, agree = [], []

    def fidelity(i, ids, logits):
        k, a = F.compare(ref.rows(i, ids), logits)
        kl.append(k)
        agree.append(a)

    with timed(f"scoring {lm_record.name(record)} on {len(reqs)} examples"):
        scores, energy = meter.once(lambda: score_session(session, reqs, cfg["k"], fidelity), len(reqs), "example")
    return {"record": record, **S.aggregate(scores, cfg["k"]),
            **lambada_intervals(scores, boot["samples"], boot["seed"]),
            "hits": "".join("1" if s["greedy"] else "0" for s in scores),   # per example, for paired deltas
            "agreement": sum(agree) / len(agree), "agreement_ci95": bootstrap(agree, boot["samples"], boot["seed"]),
            "kl_mean": sum(kl) / len(kl), "kl_ci95": bootstrap(kl, boot["samples"], boot["seed"]),
            "agree": "".join("1" if a else "0" for a in agree),   # per example: same top-1 word as the reference
            "threads": cfg["threads"], "energy_eval": energy}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--build", "--data", "--out", "--reference"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_sections(args.params, PARAMS, {"eval_lm": EvalLm, "bootstrap": Bootstrap, "energy": Energy})
    cfg, boot = p["eval_lm"], p["bootstrap"]
    require_dir(args.build, "built variant folder")
    units = lm_record.units(args.build)
    texts = read_texts(args.data, cfg["limit"])
    from stages.runtimes.lm.base import context_length, tokenizer

    def reqs_for(build: Path):
        return encode(tokenizer(build), texts, context_length(build))

    meter = E.open_meter(p["energy"])
    if units[0][0] == "":
        return write_json(args.out, evaluate(args.build, reqs_for, cfg, boot, meter, args.reference))
    with atomic_path(args.out) as out:   # a quant sweep: <out>/int<bits>.json each
        out.mkdir()
        for name, build in units:
            write_json(out / f"{name}.json", evaluate(build, reqs_for, cfg, boot, meter, args.reference))


if __name__ == "__main__":
    run_main(main)
