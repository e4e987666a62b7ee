"""Agreement of every precision with float32, scored by pycocotools COCOeval.

float32's confident detections (score >= PSEUDO_GT_SCORE) become pseudo ground truth;
each precision's full detection list is scored against it. This is NOT accuracy
against human labels: it says how far quantization moves the detector, and it is the
only detector metric for sources without ground truth (the offline photos). float32
against itself must score 1.0 (a sanity check of the method).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from stages.common import PipelineError, log, read_json, require_dir, run_main, timed, write_json

PSEUDO_GT_SCORE = 0.5  # float32 detections at or above this score count as ground truth
REFERENCE = "float32"


def pseudo_ground_truth(images: list[dict], reference: list[dict], threshold: float) -> dict:
    """A COCO ground-truth dict from the reference precision's confident detections."""
    anns = [{"id": k, "image_id": d["image_id"], "category_id": d["category_id"],
             "bbox": d["bbox"], "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0}
            for k, d in enumerate((d for d in reference if d["score"] >= threshold), start=1)]
    cats = sorted({a["category_id"] for a in anns})
    return {"images": [{"id": im["id"], "width": im["width"], "height": im["height"]}
                       for im in images],
            "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in cats]}


def agreement(gt: dict, results: list[dict]) -> dict:
    """COCOeval mAP and AP50 of `results` against the pseudo ground truth (null if undefined)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    if not gt["annotations"] or not results:
        return {"agreement_mAP": None if not gt["annotations"] else 0.0,
                "agreement_AP50": None if not gt["annotations"] else 0.0}
    with contextlib.redirect_stdout(sys.stderr):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"agreement_mAP": float(ev.stats[0]), "agreement_AP50": float(ev.stats[1])}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--detections", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    folder = require_dir(args.detections, "detections folder (run det_eval)")
    files = {p.stem: p for p in sorted(Path(folder).glob("*.json"))}
    if REFERENCE not in files:
        raise PipelineError(f"{folder}/{REFERENCE}.json is missing: agreement needs float32 "
                            "detections as the reference (add float32 to detector.precisions)")
    data = read_json(args.data, "evaluation manifest")
    if not isinstance(data, dict) or not data.get("images"):
        raise PipelineError(f"{args.data} lists no images (run coco_data)")
    dets = {name: read_json(path, "detections") for name, path in files.items()}
    gt = pseudo_ground_truth(data["images"], dets[REFERENCE], PSEUDO_GT_SCORE)
    log.info("pseudo ground truth: %d float32 boxes with score >= %.2f",
             len(gt["annotations"]), PSEUDO_GT_SCORE)
    out = {}
    for name in [REFERENCE] + sorted(n for n in dets if n != REFERENCE):
        with timed(f"agreement of {name}"):
            out[name] = agreement(gt, dets[name])
    write_json(args.out, out)
    log.info("agreement: %s", out)


if __name__ == "__main__":
    run_main(main)
