"""ONNX Runtime and OpenVINO variants: the shared NumPy post-processing gives LiteRT's
TFLite_Detection_PostProcess detections on the same raw outputs, bad runtime params and
missing packages are one-line errors before any work, int8 calibrates on calib.json through
the evaluation preprocessing, and (e2e) the converted networks detect what LiteRT float32 does."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from stages.core.errors import PipelineError
from stages.datasets import coco
from stages.entry import check_params, det_convert_rt, det_eval, det_onnx
from stages.methods import litert_ptq, onnx_ptq
from stages.models import ssd_mobilenet_v2 as ssd, ssd_nms
from stages.runtimes import network_only
from stages.schema import params as P
from tests.det_fixtures import ROOT, write_params
from tests.test_det_stages import fake_base, keep, tiny_coco

CFG = {"score_threshold": 0.001, "iou_threshold": 0.6, "max_detections": 100}


@pytest.fixture(scope="module")
def litert_postprocess(tmp_path_factory):
    """A .tflite holding only LiteRT's postprocess signature, configured as det_convert does,
    on 400 random anchors (a few seconds to convert)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    rng = np.random.default_rng(0)
    n = 400
    anchors = np.stack([rng.uniform(0.1, 0.9, n), rng.uniform(0.1, 0.9, n),
                        rng.uniform(0.05, 0.5, n), rng.uniform(0.05, 0.5, n)], 1).astype(np.float32)
    anchors[200:260] = anchors[100:160]  # identical boxes: IoU 1 and exact score ties below

    @tf.function(experimental_implements=litert_ptq.postprocess_signature(CFG))
    def nms(box_encodings, class_scores, anchors):
        del box_encodings, class_scores, anchors
        z = tf.constant(0.0)
        return z, z, z, z

    @tf.function(input_signature=[tf.TensorSpec([1, n, 4], tf.float32, name="box_encodings"),
                                  tf.TensorSpec([1, n, 91], tf.float32, name="class_scores")])
    def postprocess(box_encodings, class_scores):
        return dict(zip(ssd.OUTPUT_NAMES, nms(box_encodings, class_scores, tf.constant(anchors))))

    folder = tmp_path_factory.mktemp("pp")
    module = tf.Module()
    module.postprocess = postprocess
    tf.saved_model.save(module, str(folder / "sm"), signatures={"postprocess": postprocess})
    conv = tf.lite.TFLiteConverter.from_saved_model(str(folder / "sm"), signature_keys=["postprocess"])
    conv.allow_custom_ops = True
    runner = Interpreter(model_content=conv.convert(), num_threads=1).get_signature_runner("postprocess")
    return anchors, runner


def raw_outputs(seed: int, n: int = 400, ties: bool = False):
    rng = np.random.default_rng(seed)
    enc = rng.normal(0, 1.5, (1, n, 4)).astype(np.float32)
    logits = rng.normal(-4, 2.5, (1, n, 91))
    scores = (1 / (1 + np.exp(-logits))).astype(np.float32)
    if ties:  # int8-like scores: a 1/256 grid, so many exact ties within and across classes
        scores = (np.round(scores * 256) / 256).astype(np.float32)
        enc[0, 200:260] = enc[0, 100:160]
        scores[0, 200:260] = scores[0, 100:160]
    return enc, scores


@pytest.mark.parametrize("seed, ties", [(1, False), (2, False), (3, True), (4, True)])
def test_numpy_postprocess_equals_litert_op(litert_postprocess, seed, ties):
    anchors, runner = litert_postprocess
    enc, scores = raw_outputs(seed, ties=ties)
    out = runner(box_encodings=enc, class_scores=scores)
    ref = [out[k][0] for k in ssd.OUTPUT_NAMES[:3]] + [int(out["num_detections"].reshape(-1)[0])]
    got = ssd_nms.postprocess(enc, scores, anchors, **CFG)
    assert got[3] == ref[3] == 100
    np.testing.assert_array_equal(got[1], ref[1])  # same classes in the same order
    np.testing.assert_array_equal(got[2], ref[2])  # same scores (ties in the same order)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=1e-6)


def test_numpy_postprocess_with_few_candidates_pads_like_the_op(litert_postprocess):
    anchors, runner = litert_postprocess
    enc, scores = raw_outputs(5)
    scores[:] = 0.0
    scores[0, :30, 5] = np.linspace(0.2, 0.9, 30, dtype=np.float32)
    out = runner(box_encodings=enc, class_scores=scores)
    got = ssd_nms.postprocess(enc, scores, anchors, **CFG)
    n = int(out["num_detections"].reshape(-1)[0])
    assert 0 < got[3] == n <= 30
    np.testing.assert_array_equal(got[2], out["detection_scores"][0])
    np.testing.assert_allclose(got[0], out["detection_boxes"][0], atol=1e-6)
    assert not got[2][n:].any() and not got[0][n:].any()


def test_postprocess_on_real_int8_outputs_equals_litert():
    """The committed int8 .tflite (quantized scores: many ties) on the offline photos."""
    model = ROOT / "models" / "detector" / "int8.tflite"
    if not model.is_file():
        pytest.skip("models/detector/int8.tflite not checked out (dvc pull / dvc repro)")
    from stages.runtimes.litert import Detector
    det, anchors = Detector(model, 1), np.load(ROOT / "models" / "detector" / "base" / "anchors.npy")
    gt = coco.read_manifest(ROOT / "data" / "coco" / "eval.json", "eval")
    for path in coco.image_paths(gt, ROOT / "data" / "coco" / "eval.json")[:3]:
        raw = det.network(ssd.preprocess(ssd.load_image(path)))
        ref, got = det.postprocess(**raw), ssd_nms.postprocess(**raw, anchors=anchors, **CFG)
        assert got[3] == ref[3]
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[2], ref[2])
        np.testing.assert_allclose(got[0], ref[0], atol=1e-6)


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("value, message", [
    (["tensorrt-int8"], "detector.runtimes: unknown runtime 'tensorrt' in 'tensorrt-int8'"),
    (["openvino-float16"], "unsupported (runtime, precision) pair 'openvino-float16'"),
    (["onnxruntime-int4"], "unsupported (runtime, precision) pair 'onnxruntime-int4'"),
    (["litert-int8"], "unknown runtime 'litert'"),
    (["openvino-int8", "openvino-int8"], "lists a variant twice")])
def test_bad_runtime_params_are_one_line_errors(tmp_path, value, message):
    params = write_params(tmp_path / "p.yaml", **{"detector.runtimes": value})
    with pytest.raises(PipelineError) as exc:
        P.validate(P.read(params), params)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(PipelineError, match="detector.runtimes"):  # the first dvc stage stops
        check_params.main(["--params", str(params), "--out", str(tmp_path / "ok")])


@pytest.mark.parametrize("key, value, message", [
    ("detector.ptq.overflow_fix", "always", "detector.ptq.overflow_fix: Input should be 'enable'"),
    ("detector.ptq.float_box_head", "sometimes", "detector.ptq.float_box_head: Input should be a valid boolean"),
    ("detector.precisions", ["float32", "int16"], "detector.precisions: Input should be 'float32', 'float16', 'int8', 'int16x8'")])
def test_bad_ptq_params_are_one_line_errors(tmp_path, key, value, message):
    params = write_params(tmp_path / "p.yaml", **{key: value})
    with pytest.raises(PipelineError) as exc:
        check_params.main(["--params", str(params), "--out", str(tmp_path / "ok")])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_scalar_runtime_becomes_a_list(tmp_path):
    params = write_params(tmp_path / "p.yaml", **{"detector.runtimes": "openvino-int8"})
    assert P.validate(P.read(params)).detector.runtimes == ["openvino-int8"]


def test_missing_runtime_package_is_one_line_naming_pip_and_setup(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "nncf" else real(m, *a))
    params = write_params(tmp_path / "p.yaml", **{"detector.runtimes": ["openvino-int8"]})
    with pytest.raises(PipelineError) as exc:
        check_params.main(["--params", str(params), "--out", str(tmp_path / "ok")])
    assert str(exc.value) == ("detector.runtimes: openvino-int8: python package 'nncf' is missing: "
                              "pip install nncf==3.4.0 (or run `bash setup.sh`)")
    monkeypatch.setattr(network_only.importlib, "import_module",
                        lambda m: (_ for _ in ()).throw(ImportError(m)))
    with pytest.raises(PipelineError, match=r"pip install onnxruntime==1.31.1 \(or run `bash setup.sh`\)"):
        network_only.require("onnxruntime")


def test_convert_rt_rejects_bad_variants_and_inputs_before_work(tmp_path, monkeypatch):
    params, data = tiny_coco(tmp_path)
    out, base = keep(tmp_path / "out"), fake_base(tmp_path)
    (tmp_path / "net.onnx").write_bytes(b"x")
    monkeypatch.setattr(onnx_ptq, "ort_int8", lambda *a: pytest.fail("converted despite bad input"))
    args = ["--onnx", str(tmp_path / "net.onnx"), "--base", str(base), "--calib",
            str(data / "calib.json"), "--out", str(out), "--params", str(params)]
    for variant, message in (("tensorrt-int8", "unknown runtime"), ("int8", "det_convert"),
                             ("openvino-float16", "unsupported")):
        with pytest.raises(PipelineError, match=message):
            det_convert_rt.main(["--variant", variant] + args)
    with pytest.raises(PipelineError, match="ONNX network .*run det_onnx"):
        det_convert_rt.main(["--variant", "onnxruntime-int8"] + args[:1] + ["absent.onnx"] + args[2:])
    with pytest.raises(PipelineError, match="run det_export"):
        det_onnx.main(["--base", str(tmp_path / "nobase"), "--out", str(out)])
    assert out.read_text() == "previous"


def test_int8_variants_calibrate_on_every_image_of_calib_json(tmp_path, monkeypatch):
    """Both int8 builders get exactly calib.json's images, preprocessed as for evaluation."""
    _, data = tiny_coco(tmp_path)
    later = write_params(tmp_path / "later.yaml", **{"detector.calib_size": 1, "seed": 7,
                                                     "detector.iou_threshold": 0.45,
                                                     "detector.ptq.float_box_head": False,
                                                     "detector.ptq.overflow_fix": "first_layer"})
    base = fake_base(tmp_path)
    (tmp_path / "net.onnx").write_bytes(b"onnx")
    seen = {}
    monkeypatch.setattr(onnx_ptq, "ort_int8", lambda f, calib, out, box: (
        seen.__setitem__("ort", (calib, box)), out.write_bytes(b"q")))
    monkeypatch.setattr(onnx_ptq, "openvino_ir", lambda f, prec, calib, out, ptq: (
        seen.__setitem__("ov", (calib, ptq)), (out / "model.xml").write_text(prec)))
    for variant in ("onnxruntime-int8", "openvino-int8", "openvino-float32"):
        det_convert_rt.main(["--variant", variant, "--onnx", str(tmp_path / "net.onnx"), "--base",
                             str(base), "--calib", str(data / "calib.json"), "--out",
                             str(tmp_path / variant), "--params", str(later)])
    listed = [im["file_name"] for im in json.loads((data / "calib.json").read_text())["images"]]
    assert [p.name for p in seen["ort"][0]] == listed and len(listed) == 4
    ptq = {"float_box_head": False, "overflow_fix": "first_layer"}  # write_params' values
    assert seen["ort"][1] is False and seen["ov"] == ([], ptq)  # float32 came last: no images
    cfg = json.loads((tmp_path / "openvino-int8" / "postprocess.json").read_text())
    assert cfg == {"runtime": "openvino", "precision": "int8", "score_threshold": 0.001,
                   "iou_threshold": 0.45, "max_detections": 100, "ptq": ptq}
    xs = list(onnx_ptq.samples(seen["ort"][0]))
    ref = [ssd.preprocess(ssd.load_image(p)) for p in seen["ort"][0]]
    assert len(xs) == 4 and all(np.array_equal(a, b) for a, b in zip(xs, ref))


def two_conv_onnx(path: Path) -> None:
    """image (1, 300, 300, 3) -> a backbone conv -> a box-regression conv (the real names)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
         for n, s in (("w0", (4, 3, 3, 3)), ("w1", (4, 4, 1, 1)))]
    nodes = [helper.make_node("Transpose", ["image"], ["x"], perm=[0, 3, 1, 2], name="nchw"),
             helper.make_node("Conv", ["x", "w0"], ["y"], strides=[30, 30], name="FeatureExtractor/Conv"),
             helper.make_node("Conv", ["y", "w1"], ["box_encodings"],
                              name="BoxPredictor_0/BoxEncodingPredictor/BiasAdd")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 300, 300, 3])],
                              [helper.make_tensor_value_info("box_encodings", TensorProto.FLOAT, None)], w)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


@pytest.mark.parametrize("float_box_head", [True, False])
def test_float_box_head_keeps_exactly_the_box_convs_in_float(tmp_path, float_box_head):
    import onnx
    _, data = tiny_coco(tmp_path)
    two_conv_onnx(tmp_path / "net.onnx")
    assert onnx_ptq.box_head_nodes(tmp_path / "net.onnx") == ["BoxPredictor_0/BoxEncodingPredictor/BiasAdd"]
    calib = coco.image_paths(coco.read_manifest(data / "calib.json", "c"), data / "calib.json")
    onnx_ptq.ort_int8(tmp_path / "net.onnx", calib, tmp_path / "q.onnx", float_box_head)
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    made = {o: n.op_type for n in graph.node for o in n.output}
    convs = {n.name: made.get(n.input[1]) for n in graph.node if n.op_type == "Conv"}
    assert convs["FeatureExtractor/Conv"] == "DequantizeLinear"  # int8 weights
    box = convs["BoxPredictor_0/BoxEncodingPredictor/BiasAdd"]
    assert (box != "DequantizeLinear") if float_box_head else (box == "DequantizeLinear")


# ------------------------------------------------------------------ real graph (e2e)

@pytest.mark.e2e
def test_converted_networks_detect_what_litert_float32_does(tmp_path):
    base, tflite = ROOT / "models" / "detector" / "base", ROOT / "models" / "detector" / "float32.tflite"
    if not (base / "raw_graph.pb").is_file() or not tflite.is_file():
        pytest.skip("models/detector not checked out")
    data = str(ROOT / "data" / "coco" / "eval.json")
    det_onnx.main(["--base", str(base), "--out", str(tmp_path / "net.onnx")])
    ref_file = tmp_path / "ref.json"
    det_eval.main(["--variant", "float32", "--model", str(tflite), "--data", data, "--detections",
                   str(ref_file), "--metrics", str(tmp_path / "m.json")])
    ref = json.loads(ref_file.read_text())
    for variant in ("onnxruntime-float32", "openvino-float32"):
        det_convert_rt.main(["--variant", variant, "--onnx", str(tmp_path / "net.onnx"), "--base",
                             str(base), "--calib", "unused", "--out", str(tmp_path / variant)])
        det_eval.main(["--variant", variant, "--model", str(tmp_path / variant), "--data", data,
                       "--detections", str(tmp_path / f"{variant}.json"), "--metrics",
                       str(tmp_path / "m.json")])
        got = groups(json.loads((tmp_path / f"{variant}.json").read_text()))
        want = groups(ref)
        assert got.keys() == want.keys() and len(want) > 5
        for key, dets in want.items():
            assert len(got[key]) == len(dets), key
            np.testing.assert_allclose([d["score"] for d in got[key]],
                                       [d["score"] for d in dets], atol=1e-3)
            np.testing.assert_allclose(got[key][0]["bbox"], dets[0]["bbox"], atol=0.5)


def groups(dets: list[dict], min_score: float = 0.3) -> dict:
    """Confident detections per (image, category), highest score first."""
    out: dict = {}
    for d in sorted(dets, key=lambda d: -d["score"]):
        if d["score"] >= min_score:
            out.setdefault((d["image_id"], d["category_id"]), []).append(d)
    return out


@pytest.mark.e2e
def test_int16x8_converts_calibrated_and_tracks_float32(tmp_path):
    """LiteRT's int16-activation mode: calibrated like int8, outputs close to float32's."""
    base, tflite = ROOT / "models" / "detector" / "base", ROOT / "models" / "detector" / "float32.tflite"
    if not (base / "raw_graph.pb").is_file() or not tflite.is_file():
        pytest.skip("models/detector not checked out")
    from stages.runtimes.litert import Detector
    gt = coco.read_manifest(ROOT / "data" / "coco" / "eval.json", "eval")
    paths = coco.image_paths(gt, ROOT / "data" / "coco" / "eval.json")[:3]
    (tmp_path / "m.tflite").write_bytes(litert_ptq.convert_to(base, "int16x8", CFG, paths[:2]))
    q, ref = Detector(tmp_path / "m.tflite", 2), Detector(tflite, 2)
    x = ssd.preprocess(ssd.load_image(paths[2]))
    got, want = q.network(x), ref.network(x)
    score_err = np.abs(got["class_scores"] - want["class_scores"]).mean()
    box_err = np.abs(got["box_encodings"] - want["box_encodings"]).mean()
    print(f"int16x8 vs float32: mean |score error| {score_err:.2e}, mean |box error| {box_err:.2e}")
    assert 0 < score_err < 1e-3 and 0 < box_err < 0.15  # quantized (not a float copy), and close
    # (2 calibration images clip some ranges: 1.4e-4 and 0.08 measured; encodings are O(1))
