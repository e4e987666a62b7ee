"""Run one .tflite detector on the evaluated images: COCO detections, mAP and speed.

Detections: COCO results (image_id, official category_id, bbox [x, y, w, h] in original
pixels, score). Metrics (flat): pycocotools COCOeval AP, AP50, AP75, AP_small, AP_medium,
AP_large, AR100 (0..1; null without ground truth, e.g. the offline photos: then see
det_agreement), bare-invoke latency (median/p90 over eval_det.latency_runs after
eval_det.warmup invokes) and end-to-end throughput (decode + preprocess + invoke +
postprocess over all images, with decoding prefetched in a background thread).
"""
from __future__ import annotations

import argparse
import json
import contextlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from stages import detector
from stages.common import (PipelineError, atomic_path, get_param, load_params, log, read_json,
                           require_choice, require_file, require_int, run_main, timed, write_json)

PREFETCH = 2  # images decoded ahead of the interpreter
COCO_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AP_small": 3, "AP_medium": 4, "AP_large": 5,
              "AR100": 8}  # key -> index in COCOeval.stats


def load_eval(path) -> dict:
    data = read_json(path, "evaluation manifest")
    if not isinstance(data, dict) or not data.get("images"):
        raise PipelineError(f"{path} lists no images (run coco_data)")
    if data.get("has_ground_truth") and not isinstance(data.get("annotations"), list):
        raise PipelineError(f"{path} claims ground truth but has no annotations")
    return data


def latency(det, x: np.ndarray, warmup: int, runs: int) -> list[float]:
    """Milliseconds of bare invokes (network + post-processing, tensors in and out) on a
    fixed input, after `warmup` discarded invokes."""
    for _ in range(warmup):
        det(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        det(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _prepare(im: dict) -> np.ndarray:
    return detector.preprocess(detector.load_image(im["path"]))


def detect_all(det: detector.Detector, images: list[dict]) -> tuple[list[dict], float]:
    """COCO detections for every image and the wall time; decoding overlaps inference."""
    from tqdm import tqdm
    results = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(_prepare, im) for im in images[:PREFETCH]]
        for k, im in enumerate(tqdm(images, desc="detect", unit="img", disable=None)):
            x = pending[k].result()
            if k + PREFETCH < len(images):
                pending.append(pool.submit(_prepare, images[k + PREFETCH]))
            pending[k] = None
            results += detector.to_coco(im["id"], im["width"], im["height"], *det(x))
    return results, time.perf_counter() - t0


def coco_metrics(gt: dict, results: list[dict]) -> dict:
    """pycocotools COCOeval bbox metrics; undefined ones (-1) become null."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    if not results:
        return {k: 0.0 for k in COCO_STATS}
    with contextlib.redirect_stdout(sys.stderr):
        coco_gt = COCO()
        coco_gt.dataset = {k: gt[k] for k in ("images", "annotations", "categories")}
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        ev.params.imgIds = sorted(im["id"] for im in gt["images"])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: (float(ev.stats[i]) if ev.stats[i] >= 0 else None) for k, i in COCO_STATS.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--precision", "--model", "--data", "--detections", "--metrics"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    require_choice("precision", args.precision, detector.PRECISIONS)
    params = load_params(args.params)
    threads = require_int("eval_det.threads", get_param(params, "eval_det.threads"), 1)
    warmup = require_int("eval_det.warmup", get_param(params, "eval_det.warmup"), 0)
    runs = require_int("eval_det.latency_runs", get_param(params, "eval_det.latency_runs"), 1)
    model = require_file(args.model, "detector model (run det_convert)")
    gt = load_eval(args.data)
    images = gt["images"]
    det = detector.Detector(model, threads)
    with timed(f"latency: {warmup} warm-up + {runs} timed invokes"):
        times = latency(det, _prepare(images[0]), warmup, runs)
    with timed(f"detect {len(images)} images"):
        results, wall = detect_all(det, images)
    with atomic_path(args.detections) as tmp:
        tmp.write_text(json.dumps(results) + "\n")
    has_gt = bool(gt.get("has_ground_truth"))
    metrics = coco_metrics(gt, results) if has_gt else {k: None for k in COCO_STATS}
    median = float(np.median(times))
    invoke_per_s, images_per_s = 1e3 / median, len(images) / wall
    metrics.update(has_ground_truth=has_gt, num_images=len(images), latency_ms_median=median,
                   latency_ms_p90=float(np.percentile(times, 90)), invoke_per_s=invoke_per_s,
                   images_per_s=images_per_s, e2e_over_invoke=images_per_s / invoke_per_s,
                   size_mb=Path(model).stat().st_size / 1e6, threads=threads)
    write_json(args.metrics, metrics)
    log.info("%s: AP=%s median %.1f ms, %.1f img/s (%.2f of invoke/s), %d detections",
             args.precision, metrics["AP"], median, images_per_s, metrics["e2e_over_invoke"],
             len(results))


if __name__ == "__main__":
    run_main(main)
