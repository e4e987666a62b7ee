"""The classifier study's report: plots/cls/report.md (the table, the goal, how each figure
was measured), plots/cls/variants.json and its figure, from metrics/cls."""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import log, run_main
from stages.core.files import atomic_path, read_json
from stages.reporting import cls as C, export
from stages.schema.classifier import Classifier
from stages.schema.common import Bootstrap
from stages.schema.host import HostName
from stages.schema.load import load_sections

PARAMS = ("host", "classifier.variants", "classifier.reference", "bootstrap")
SCHEMAS = {"host": HostName, "classifier": Classifier, "bootstrap": Bootstrap}


def render(rows: dict, train: dict, nodes: dict, host: str, reference: str) -> str:
    best, lines = C.goal(rows)
    any_row = next(iter(rows.values()))
    n, machine = any_row["num_examples"], any_row["machine"]
    parts = ["# Text classifier: what compression does to a fine-tuned BERT-family encoder", "",
             f"Task: {len(train['labels'])} labels ({', '.join(train['labels'])}); the fine-tuned fp32 model "
             f"scored {100 * train['val_acc']:.1f}% on {train['val_examples']} validation examples. Test: "
             f"n = {n} for every variant (the same examples). Reference for the paired Δacc: `{reference}`. "
             f"Speed, size and energy: host **{host}** ({machine['cpu']}, {any_row['threads']} threads, "
             f"{any_row['tokens']} tokens per example), energy method `{any_row['energy_batch1']['method']}`.", "",
             "## Goal: at least 6× smaller and 3× faster than fp32 on ONNX Runtime or OpenVINO, paired lower "
             "bound within 1 point", "",
             f"**Met by `{best}`.**" if best else "**Not met by any variant**; the closest:", ""]
    parts += [f"- {line}" for line in lines[:8]] + ["", "## Every variant", ""] + C.table(rows)
    parts += ["", "Smaller ×: the reference's model files ÷ the variant's. Faster ×: batch-1 median latency of "
              "fp32 on the variant's own runtime ÷ the variant's. Agree: share of test examples where the "
              "variant predicts the reference's label. Magnitude pruning zeroes weights in dense tensors: the "
              "file is as large, and no runtime here has sparse kernels, so a latency difference to fp32 "
              "does not come from skipped zeros. Batch-1 latencies were timed one variant after another in "
              "one run; compare them within the run-to-run spread (p90 beside the median).", "", "## Nodes", ""]
    parts += [f"- `{name}`: {n_['method']}, validation accuracy {100 * n_['val_acc']:.1f}% "
              f"({n_['params']:,} parameters)" for name, n_ in nodes.items()]
    parts += ["", "![accuracy vs latency](png/cls_accuracy_latency.png)", ""]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--metrics", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_sections(args.params, PARAMS, SCHEMAS)
    boot = p["bootstrap"]
    cls = p["classifier"]
    rows = C.derive(C.load(args.metrics, p["host"], list(cls["variants"])), cls["reference"], boot["samples"],
                    boot["seed"])
    train = read_json(args.metrics / "train" / "fp32.json")
    used = sorted({v["node"] for v in cls["variants"].values()} - {"fp32"})
    nodes = {"fp32": train} | {n: read_json(args.metrics / "compress" / f"{n}.json") for n in used}
    text = render(rows, train, nodes, p["host"], cls["reference"])
    fig = C.figure(rows, next(iter(rows.values()))["num_examples"], p["host"])
    browser = export.find_browser()
    with atomic_path(args.out) as tmp:
        (tmp / "png").mkdir(parents=True)
        export.write_png([("cls_accuracy_latency", "accuracy vs latency", fig)], tmp / "png", browser)
        (tmp / "report.md").write_text(text)
        (tmp / "variants.json").write_text(C.dump(rows))
    log.info("wrote %s (%d variants)", args.out, len(rows))


if __name__ == "__main__":
    run_main(main)
