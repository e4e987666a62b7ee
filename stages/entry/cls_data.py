"""The classifier's data: train, validation, test and calibration JSONL plus the label list
(classifier.data). Splits are by a seeded hash of each text's content (official: the published
splits, a text repeated in a later split dropped from it), so no text is in two of them;
calibration (static int8) is calib_size training examples drawn with the seed.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from stages.core.errors import PipelineError, log, run_main, timed
from stages.core.files import atomic_path
from stages.datasets import topics
from stages.schema.classifier import Classifier
from stages.schema.load import load_sections

PARAMS = ("seed", "classifier.data")
SCHEMAS = {"seed": int, "classifier": Classifier}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--downloads", default="data/.cache/cls", type=Path)  # official: resumable
    args = ap.parse_args(argv)
    p = load_sections(args.params, PARAMS, SCHEMAS)
    cfg = p["classifier"]["data"].plain()
    with timed(f"reading the {cfg['source']} examples"):
        if cfg["source"] == "official":   # its published splits
            parts = topics.official(args.downloads)
            recs = [r for rows in parts.values() for r in rows]
        else:
            recs = topics.examples(cfg)
            parts = topics.split(recs, p["seed"], cfg["split"])
    topics.check_disjoint(parts)
    labels = topics.label_names(parts)
    if len(parts["test"]) < cfg["min_test"]:
        raise PipelineError(f"classifier.data: {len(parts['test'])} test examples, fewer than min_test "
                            f"({cfg['min_test']}); {len(recs)} examples in all")
    if cfg["calib_size"] > len(parts["train"]):
        raise PipelineError(f"classifier.data.calib_size: {cfg['calib_size']} is more than the "
                            f"{len(parts['train'])} training examples")
    calib = random.Random(p["seed"]).sample(parts["train"], cfg["calib_size"])
    log.info("%d examples, %d labels: train %d, validation %d, test %d; calibration %d (from train)",
             len(recs), len(labels), *(len(parts[s]) for s in topics.SPLITS), len(calib))
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        for name, rows in [*parts.items(), ("calib", calib)]:
            (tmp / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp / "labels.json").write_text(json.dumps(labels) + "\n")


if __name__ == "__main__":
    run_main(main)
