"""Agreement of every variant (every runtime and precision) with LiteRT float32, scored by pycocotools COCOeval with 95% intervals.

float32's confident detections (score >= 0.5) become pseudo ground truth; each precision's
full detection list is scored against it. This is NOT accuracy against human labels: it
says how far quantization moves the detector, and it is the only detector metric for
sources without ground truth (the offline photos). float32 against itself must score 1.0.
Only the variants of detector.precisions and detector.runtimes are read, never a stale file
of an earlier run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import log, run_main, timed
from stages.core.files import read_json, write_json
from stages.datasets.coco import read_manifest
from stages.schema.common import Bootstrap
from stages.schema.detector import Detector
from stages.schema.load import load_sections
from stages.tasks import coco_detection as C

PARAMS = ("bootstrap", "detector.precisions", "detector.runtimes")
REFERENCE = "float32"
SCHEMAS = {"bootstrap": Bootstrap, "detector": Detector}  # validated here (check_params: the whole file)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--detections", required=True, type=Path, help="folder of <variant>.json")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_sections(args.params, PARAMS, SCHEMAS)
    variants = p["detector"]["precisions"] + p["detector"]["runtimes"]
    boot, files = p["bootstrap"], {v: args.detections / f"{v}.json" for v in variants}
    data = read_manifest(args.data, "evaluation manifest")
    dets = {name: read_json(path, "detections") for name, path in files.items()}
    gt = C.pseudo_ground_truth(data["images"], dets[REFERENCE])
    log.info("pseudo ground truth: %d float32 boxes with score >= %.2f",
             len(gt["annotations"]), C.PSEUDO_GT_SCORE)
    out = {}
    for name in [REFERENCE] + [n for n in variants if n != REFERENCE]:
        with timed(f"agreement of {name}"):
            out[name] = C.agreement(gt, dets[name], boot["samples"], boot["seed"])
    write_json(args.out, out)
    log.info("agreement: %s", {k: v["agreement_mAP"] for k, v in out.items()})


if __name__ == "__main__":
    run_main(main)
