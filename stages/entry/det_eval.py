"""Accuracy of one detector variant (any runtime): COCO detections and pycocotools metrics with 95% intervals.

Detections: COCO results (image_id, official category_id, bbox [x, y, w, h] in original
pixels, score). Metrics: COCOeval AP, AP50, AP75, AP_small/medium/large, AR100 (0..1; null
without ground truth: then see det_agreement), AP and AP50 with bootstrap intervals over
images. Speed is measured by det_bench, so re-timing never re-scores.
"""
from __future__ import annotations

import argparse
import json
import os

from stages.core.errors import log, run_main, timed
from stages.core.files import atomic_path
from stages.runtimes.detect_images import detect_all, open_detector
from stages.schema import metrics as M
from stages.schema.common import Bootstrap
from stages.schema.load import load_sections
from stages.tasks import coco_detection as C

PARAMS = ("bootstrap",)
THREADS = len(os.sched_getaffinity(0))  # detections do not depend on it (tests check 1, 2, 3)
SCHEMAS = {"bootstrap": Bootstrap}  # validated here (check_params: the whole file)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--variant", "--model", "--data", "--detections", "--metrics"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    boot = load_sections(args.params, PARAMS, SCHEMAS)["bootstrap"]
    runtime, precision, det, gt, paths = open_detector(args.variant, args.model, args.data, THREADS)
    with timed(f"detect {len(paths)} images"):
        results, _ = detect_all(det, gt["images"], paths)
    with atomic_path(args.detections) as tmp:
        tmp.write_text(json.dumps(results) + "\n")
    has_gt = bool(gt.get("has_ground_truth"))
    row = {"runtime": runtime, "precision": precision, "has_ground_truth": has_gt,
           "num_images": len(paths), "num_detections": len(results)}
    if has_gt:
        with timed(f"COCOeval + {boot['samples']} bootstrap resamples"):
            ev = C.evaluate(gt, results)
            row.update(C.stats(ev), **C.bootstrap_ci(ev, boot["samples"], boot["seed"]))
    M.write(args.metrics, M.DetEval(**row))
    log.info("%s: AP=%s, %d detections", args.variant, row.get("AP"), len(results))


if __name__ == "__main__":
    run_main(main)
