"""The fine-tuned classifier (node `fp32`): the encoder from its checksummed package with a
seeded classification head, fine-tuned on the training split (classifier.train), scored on
the validation split for the record. Bit-reproducible on one machine at a fixed thread count."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from stages.core.errors import log, run_main, timed
from stages.core.files import atomic_path, write_json
from stages.datasets.cls_files import read_labels, read_split
from stages.methods.cls_train import fit, predict
from stages.models import encoder
from stages.schema.classifier import Classifier
from stages.schema.load import load_sections

PARAMS = ("seed", "classifier.encoder", "classifier.max_len", "classifier.train")
SCHEMAS = {"seed": int, "classifier": Classifier}


def val_acc(model, tok, recs: list[dict], label2id: dict, max_len: int) -> float:
    preds = predict(model, tok, [r["text"] for r in recs], max_len).argmax(axis=1)
    return float(np.mean(preds == np.asarray([label2id[r["label"]] for r in recs])))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--data", "--out", "--metrics"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_sections(args.params, PARAMS, SCHEMAS)
    cls, seed = p["classifier"], p["seed"]
    labels, train, val = read_labels(args.data), read_split(args.data, "train"), read_split(args.data, "val")
    label2id = {name: i for i, name in enumerate(labels)}
    with tempfile.TemporaryDirectory() as tmp:
        base = encoder.extract(cls["encoder"].plain(), Path(tmp) / "encoder")
        model, tok = encoder.new_classifier(base, labels, seed)
    cfg = cls["train"].plain()
    with timed(f"fine-tuning on {len(train)} examples, {cfg['epochs']} epochs"):
        run = fit(model, tok, train, label2id, cfg, cls["max_len"], seed, cfg["epochs"])
    acc = val_acc(model, tok, val, label2id, cls["max_len"])
    log.info("fp32: validation accuracy %.4f (%d examples), final loss %.3f", acc, len(val), run["final_loss"])
    with atomic_path(args.out) as tmp:
        encoder.save(model, tok, tmp)
    write_json(args.metrics, {"node": "fp32", "method": "finetune", "train": run, "val_acc": acc,
                              "val_examples": len(val), "labels": labels,
                              "params": int(sum(t.numel() for t in model.parameters()))})


if __name__ == "__main__":
    run_main(main)
