"""A classifier variant (classifier.variants.<name>): its node built for its runtime at its
precision (stages/runtimes/cls/<runtime>.py); static int8 calibrates on the calibration
split (training examples, never validation or test)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from stages.core.errors import log, run_main
from stages.core.files import atomic_path, write_json
from stages.datasets.cls_files import read_split
from stages.models import encoder
from stages.runtimes import cls as runtimes
from stages.schema.classifier import Classifier
from stages.schema.load import load_sections

PARAMS = ("classifier.variants.${key}", "classifier.max_len")
SCHEMAS = {"classifier": Classifier}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", required=True)
    for flag in ("--node", "--data", "--out", "--metrics"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    keys = tuple(k.replace("${key}", args.variant) for k in PARAMS)
    p = load_sections(args.params, keys, SCHEMAS)
    v, max_len = p["classifier"]["variants"][args.variant].plain(), p["classifier"]["max_len"]
    runtime = runtimes.get(v["runtime"])
    tok = encoder.load(args.node)[1]
    calib = [encoder.encode(tok, [r["text"]], max_len) for r in read_split(args.data, "calib")]
    t0 = time.perf_counter()
    with atomic_path(args.out) as tmp:
        runtime.build(args.node, tmp, v["precision"], calib)
    size = runtime.size_mb(args.out)
    log.info("%s: %s %s, %.1f MB", args.variant, v["runtime"], v["precision"], size)
    write_json(args.metrics, {**v, "size_mb": size, "build_s": round(time.perf_counter() - t0, 2)})


if __name__ == "__main__":
    run_main(main)
