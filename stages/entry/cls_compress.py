"""A compressed classifier node (classifier.nodes.<name>) from its input node: distillation
into a shallower student, structured pruning of heads and FFN neurons, or magnitude pruning,
each followed by fine-tuning on the training split (classifier.train's recipe)."""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import log, run_main, timed
from stages.core.files import atomic_path, write_json
from stages.datasets.cls_files import read_labels, read_split
from stages.entry.cls_train import val_acc
from stages.methods import cls_distill, cls_prune
from stages.methods.cls_train import fit
from stages.models import encoder
from stages.schema.classifier import Classifier
from stages.schema.load import load_sections

PARAMS = ("seed", "classifier.nodes.${key}", "classifier.max_len", "classifier.train")
SCHEMAS = {"seed": int, "classifier": Classifier}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", required=True)
    for flag in ("--input", "--data", "--out", "--metrics"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    keys = tuple(k.replace("${key}", args.node) for k in PARAMS)
    p = load_sections(args.params, keys, SCHEMAS)
    cls, seed = p["classifier"], p["seed"]
    node = cls["nodes"][args.node].plain()
    labels, train, val = read_labels(args.data), read_split(args.data, "train"), read_split(args.data, "val")
    label2id = {name: i for i, name in enumerate(labels)}
    model, tok = encoder.load(args.input)
    teacher, masked, detail = None, None, {}
    if node["method"] == "distill":
        teacher = model
        model, kept = cls_distill.student(teacher, node["layers"])
        detail = {"layers_kept": kept}
    elif node["method"] == "prune_structured":
        detail = cls_prune.prune_structured(model, node["heads"], node["ffn"])
    else:
        masked = cls_prune.prune_magnitude(model, node["sparsity"])
    before = val_acc(model, tok, val, label2id, cls["max_len"])
    with timed(f"{node['method']}: {node['epochs']} epochs of fine-tuning"):
        run = fit(model, tok, train, label2id, cls["train"].plain(), cls["max_len"], seed, node["epochs"],
                  teacher=teacher, temperature=node["temperature"])
    if masked is not None:
        detail = {"sparsity": cls_prune.finalize(masked)}
    after = val_acc(model, tok, val, label2id, cls["max_len"])
    log.info("%s: validation accuracy %.4f before fine-tuning, %.4f after", args.node, before, after)
    with atomic_path(args.out) as tmp:
        encoder.save(model, tok, tmp)
    write_json(args.metrics, {"node": args.node, **node, **detail, "train": run, "val_acc_before": before,
                              "val_acc": after, "params": int(sum(t.numel() for t in model.parameters()))})


if __name__ == "__main__":
    run_main(main)
