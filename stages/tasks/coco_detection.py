"""COCO box detection scoring with pycocotools: the metrics, their bootstrap intervals, and
agreement with a reference detector (its confident detections as pseudo ground truth)."""
from __future__ import annotations

import contextlib
import copy
import sys

import numpy as np

COCO_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AP_small": 3, "AP_medium": 4, "AP_large": 5,
              "AR100": 8}  # key -> index in COCOeval.stats
PSEUDO_GT_SCORE = 0.5      # reference detections at or above this score count as ground truth


def evaluate(gt: dict, results: list[dict]):
    """A COCOeval (bbox) after evaluate/accumulate/summarize; None when there is nothing to score."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    if not results or not gt["annotations"]:
        return None
    with contextlib.redirect_stdout(sys.stderr):
        coco_gt = COCO()
        coco_gt.dataset = {k: gt[k] for k in ("images", "annotations", "categories")}
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        ev.params.imgIds = sorted(im["id"] for im in gt["images"])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def stats(ev) -> dict:
    """COCOeval.stats by name; undefined ones (-1) become null, no detections give 0."""
    if ev is None:
        return {k: 0.0 for k in COCO_STATS}
    return {k: (float(ev.stats[i]) if ev.stats[i] >= 0 else None) for k, i in COCO_STATS.items()}


def _ap(precision: np.ndarray) -> tuple[float, float]:
    """AP@[.5:.95] and AP50 from accumulate()'s precision [T, R, K, 1, 1], as summarize() does."""
    p, p50 = precision[..., 0, 0], precision[0, ..., 0, 0]
    mean = lambda a: float(np.mean(a[a > -1])) if (a > -1).any() else 0.0  # noqa: E731
    return mean(p), mean(p50)


def bootstrap_ci(ev, samples: int, seed: int, level: float = 0.95) -> dict:
    """Percentile intervals of AP and AP50 over images resampled with replacement.

    pycocotools' own accumulate() re-pools the per-image matches of each resample (area
    "all", 100 detections, the only ones the intervals cover), so a resample's AP is
    exactly what COCOeval would report for that multiset of images.
    """
    if ev is None:
        return {"AP_ci95": None, "AP50_ci95": None}
    p = ev._paramsEval
    n_img, n_area, n_cat = len(p.imgIds), len(p.areaRng), len(p.catIds)
    all_area = [list(a) for a in p.areaRng].index(list(p.areaRng[0]))  # "all" comes first
    sub = copy.copy(ev)
    sub.params = copy.deepcopy(ev.params)
    sub.params.areaRng, sub.params.areaRngLbl, sub.params.maxDets = [p.areaRng[all_area]], ["all"], [p.maxDets[-1]]
    rng, draws = np.random.default_rng(seed), []
    with contextlib.redirect_stdout(sys.stderr):
        for _ in range(samples):
            pick = rng.integers(0, n_img, n_img)
            sub.evalImgs = [ev.evalImgs[k * n_area * n_img + all_area * n_img + j]
                            for k in range(n_cat) for j in pick]
            sub.params.imgIds = list(range(n_img))
            sub._paramsEval = copy.copy(sub.params)
            sub.accumulate()
            draws.append(_ap(sub.eval["precision"]))
    lo, hi = np.percentile(np.array(draws), [50 * (1 - level), 50 * (1 + level)], axis=0)
    return {"AP_ci95": [float(lo[0]), float(hi[0])], "AP50_ci95": [float(lo[1]), float(hi[1])]}


def pseudo_ground_truth(images: list[dict], reference: list[dict],
                        threshold: float = PSEUDO_GT_SCORE) -> dict:
    """A COCO ground-truth dict from the reference detector's confident detections."""
    anns = [{"id": k, "image_id": d["image_id"], "category_id": d["category_id"],
             "bbox": d["bbox"], "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0}
            for k, d in enumerate((d for d in reference if d["score"] >= threshold), start=1)]
    cats = sorted({a["category_id"] for a in anns})
    return {"images": [{"id": im["id"], "width": im["width"], "height": im["height"]}
                       for im in images],
            "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in cats]}


def agreement(pseudo_gt: dict, results: list[dict], samples: int, seed: int) -> dict:
    """COCO mAP and AP50 of `results` against the pseudo ground truth, with 95% intervals
    (null when the reference has no confident detection)."""
    if not pseudo_gt["annotations"]:
        return dict.fromkeys(("agreement_mAP", "agreement_mAP_ci95", "agreement_AP50",
                              "agreement_AP50_ci95"))
    ev = evaluate(pseudo_gt, results)
    ci = bootstrap_ci(ev, samples, seed)
    s = stats(ev)
    return {"agreement_mAP": s["AP"], "agreement_mAP_ci95": ci["AP_ci95"],
            "agreement_AP50": s["AP50"], "agreement_AP50_ci95": ci["AP50_ci95"]}
