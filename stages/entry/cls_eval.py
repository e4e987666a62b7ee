"""Accuracy of a classifier variant on the test split: accuracy and macro-F1 with bootstrap
95% intervals, and every example's prediction (the report pairs each variant with the
reference on these). Scoring runs in batches of 32 at classifier.bench.threads."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stages.core.errors import log, run_main, timed
from stages.core.files import write_json
from stages.datasets.cls_files import read_labels, read_split
from stages.models.encoder import encode
from stages.runtimes import cls as runtimes
from stages.schema.classifier import Classifier
from stages.schema.common import Bootstrap
from stages.schema.load import load_sections
from stages.tasks.classify import score

PARAMS = ("classifier.variants.${key}", "classifier.max_len", "classifier.bench.threads", "bootstrap")
SCHEMAS = {"classifier": Classifier, "bootstrap": Bootstrap}
BATCH = 32


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", required=True)
    for flag in ("--model", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    keys = tuple(k.replace("${key}", args.variant) for k in PARAMS)
    p = load_sections(args.params, keys, SCHEMAS)
    cls, boot = p["classifier"], p["bootstrap"]
    v = cls["variants"][args.variant].plain()
    labels, test = read_labels(args.data), read_split(args.data, "test")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    session = runtimes.get(v["runtime"]).open(args.model, cls["bench"]["threads"])
    preds = []
    with timed(f"scoring {len(test)} test examples"):
        for start in range(0, len(test), BATCH):
            batch = encode(tok, [r["text"] for r in test[start:start + BATCH]], cls["max_len"])
            preds += session.logits(batch).argmax(axis=1).tolist()
    y = [labels.index(r["label"]) for r in test]
    out = score(y, preds, len(labels), boot["samples"], boot["seed"])
    log.info("%s: acc %.4f [%.4f, %.4f], macro-F1 %.4f", args.variant, out["acc"], *out["acc_ci95"],
             out["macro_f1"])
    write_json(args.out, {**v, **out, "labels": labels, "predictions": preds,
                          "correct": (np.asarray(preds) == np.asarray(y)).astype(int).tolist()})


if __name__ == "__main__":
    run_main(main)
