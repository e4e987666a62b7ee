"""SSD post-processing in NumPy for the runtimes that run only the network (ONNX Runtime,
OpenVINO): exactly LiteRT's TFLite_Detection_PostProcess as stages/methods/litert_ptq.py
configures it (regular per-class NMS, 1 class per detection, detections_per_class =
max_detections). One implementation for every non-LiteRT runtime, so AP and agreement mean
the same in every row; hand-written because neither ONNX's NonMaxSuppression nor
OpenVINO's NMS ops reproduce that op's decoding, tie order and cross-class merge, and
tests/test_det_runtimes.py checks it against LiteRT's own signature on the same raw outputs.

Reproduced from LiteRT's kernel (tflite/kernels/detection_postprocess.cc, 1 thread):
- decoding in float64, rounded to float32 per centre/half-size, corners in float32;
- per class: scores >= threshold (float32 compare), stable sort by score (ties: lower
  anchor first), greedy NMS dropping IoU > threshold, IoU in float32 in the op's order;
- the classes' selections merged stably by score (ties: lower class first), top N kept.
"""
from __future__ import annotations

import numpy as np

from stages.models.ssd_mobilenet_v2 import BOX_SCALES, NUM_CLASSES


def decode(box_encodings: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(N, 4) encodings [ty, tx, th, tw] + anchors [yc, xc, h, w] -> float32 corners
    [ymin, xmin, ymax, xmax], with the op's double-precision intermediates."""
    t, a = box_encodings.astype(np.float64), anchors.astype(np.float64)
    sy, sx, sh, sw = (float(np.float32(s)) for s in BOX_SCALES)
    yc = (t[:, 0] / sy * a[:, 2] + a[:, 0]).astype(np.float32)
    xc = (t[:, 1] / sx * a[:, 3] + a[:, 1]).astype(np.float32)
    hh = (0.5 * np.exp(t[:, 2] / sh) * a[:, 2]).astype(np.float32)
    hw = (0.5 * np.exp(t[:, 3] / sw) * a[:, 3]).astype(np.float32)
    return np.stack([yc - hh, xc - hw, yc + hh, xc + hw], axis=1)


def _iou(box: np.ndarray, area: np.float32, others: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """float32 IoU of one box with many, in ComputeIntersectionOverUnion's operation order."""
    zero = np.float32(0)
    h = np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), zero)
    w = np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), zero)
    inter = h * w
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area + areas - inter)
    return np.where((area <= 0) | (areas <= 0), zero, iou)


def nms_class(boxes: np.ndarray, areas: np.ndarray, scores: np.ndarray, score_min: np.float32,
              iou_max: np.float32, limit: int) -> np.ndarray:
    """Selected anchor indices of one class, in selection (score) order."""
    cand = np.flatnonzero(scores >= score_min)
    cand = cand[np.argsort(-scores[cand], kind="stable")]
    b, ar = boxes[cand], areas[cand]
    active = np.ones(len(cand), bool)
    picked: list[int] = []
    for i in range(len(cand)):
        if len(picked) >= limit:
            break
        if not active[i]:
            continue
        picked.append(i)
        rest = active[i + 1:]
        rest &= ~(_iou(b[i], ar[i], b[i + 1:], ar[i + 1:]) > iou_max)
    return cand[np.array(picked, dtype=np.int64)]


def postprocess(box_encodings: np.ndarray, class_scores: np.ndarray, anchors: np.ndarray,
                score_threshold: float, iou_threshold: float, max_detections: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Raw network outputs of image 0 ((1, N, 4), (1, N, 1 + classes) sigmoid scores) ->
    boxes (max_detections, 4), classes, scores (zero-padded, as the op) and the count."""
    boxes = decode(box_encodings[0], anchors)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    scores = np.ascontiguousarray(class_scores[0, :, 1:1 + NUM_CLASSES].T, dtype=np.float32)
    score_min, iou_max = np.float32(score_threshold), np.float32(iou_threshold)
    sel_s, sel_c, sel_a, count = [], [], [], 0
    for c in range(NUM_CLASSES):
        floor = score_min
        if count >= max_detections:
            # Exact pruning: a score <= the current N-th best cannot enter the output (earlier
            # classes win ties) nor change the NMS of higher scores.
            kept = np.concatenate(sel_s)
            nth = -np.sort(-kept, kind="stable")[max_detections - 1]
            floor = np.nextafter(nth, np.float32(np.inf))
        picked = nms_class(boxes, areas, scores[c], max(floor, score_min), iou_max,
                           max_detections)
        sel_s.append(scores[c][picked])
        sel_c.append(np.full(len(picked), c))
        sel_a.append(picked)
        count += len(picked)
    s, c, a = (np.concatenate(x) for x in (sel_s, sel_c, sel_a))
    order = np.argsort(-s, kind="stable")[:max_detections]  # stable: class order breaks ties
    n = len(order)
    out_b = np.zeros((max_detections, 4), np.float32)
    out_c = np.zeros(max_detections, np.float32)
    out_s = np.zeros(max_detections, np.float32)
    out_b[:n], out_c[:n], out_s[:n] = boxes[a[order]], c[order], s[order]
    return out_b, out_c, out_s, n
