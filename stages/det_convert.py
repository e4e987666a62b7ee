"""Convert the exported detector to one LiteRT .tflite per precision.

Every variant is the same model with two signatures, run one after the other:
  network      float32 image (1, 300, 300, 3) in [-1, 1] (see stages/detector.preprocess)
               -> the SSD feature extractor and box predictor -> box_encodings, sigmoid
               class_scores
  postprocess  box_encodings, class_scores -> TFLite's built-in TFLite_Detection_PostProcess
               custom op (box decoding against the graph's anchors with scales 10,10,5,5,
               per-class "regular" NMS) -> detection_boxes/classes/scores/num_detections
Two signatures, not one fused graph, so the NMS can run on a 1-thread interpreter while
the network uses several (see detector.Detector: LiteRT's multi-threaded regular NMS
drops a class). Only the weights and arithmetic of the network differ:
  float32       no optimization
  float16       float16 weights (dequantized at load)
  int8          full-integer: int8 weights and activations calibrated on calib.json images;
                float32 in/out and the float NMS op at the boundaries
  dynamic_int8  int8 weights, float activations (no calibration)
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info logs off

from stages import detector
from stages.common import (PipelineError, atomic_path, get_param, load_params, log, read_json,
                           require_choice, require_file, require_int, require_number, run_main,
                           timed)


def check_params(params: dict) -> dict:
    """Validated post-processing and calibration knobs."""
    cfg = {"seed": require_int("seed", get_param(params, "seed")),
           "calib_size": require_int("detector.calib_size", get_param(params, "detector.calib_size"), 1),
           "max_detections": require_int("detector.max_detections",
                                         get_param(params, "detector.max_detections"), 1)}
    for key in ("score_threshold", "iou_threshold"):
        cfg[key] = require_number(f"detector.{key}", get_param(params, f"detector.{key}"), 0, 1)
    return cfg


def calib_paths(calib_json: str | Path, calib_size: int) -> list[str]:
    """The first calib_size calibration images (coco_data already drew them with the seed)."""
    data = read_json(calib_json, "calibration list")
    paths = data.get("images") if isinstance(data, dict) else None
    if not isinstance(paths, list):
        raise PipelineError(f"{calib_json} has no 'images' list")
    if len(paths) < calib_size:
        raise PipelineError(f"detector.calib_size={calib_size} but {calib_json} lists only "
                            f"{len(paths)} images; lower calib_size or rerun coco_data")
    for p in paths[:calib_size]:
        require_file(p, "calibration image")
    return paths[:calib_size]


def postprocess_signature(cfg: dict) -> str:
    """experimental_implements text that the converter turns into TFLite_Detection_PostProcess."""
    y, x, h, w = detector.BOX_SCALES
    attrs = {"max_detections": f"i: {cfg['max_detections']}", "max_classes_per_detection": "i: 1",
             "detections_per_class": f"i: {cfg['max_detections']}", "use_regular_nms": "b: true",
             "nms_score_threshold": f"f: {cfg['score_threshold']}",
             "nms_iou_threshold": f"f: {cfg['iou_threshold']}", "y_scale": f"f: {y}",
             "x_scale": f"f: {x}", "h_scale": f"f: {h}", "w_scale": f"f: {w}",
             "num_classes": f"i: {detector.NUM_CLASSES}"}
    return " ".join(['name: "TFLite_Detection_PostProcess"'] +
                    [f'attr {{ key: "{k}" value {{ {v} }} }}' for k, v in attrs.items()])


def build_saved_model(base: Path, cfg: dict, out_dir: Path):
    """SavedModel with the "network" and "postprocess" signatures; returns the network."""
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((base / "raw_graph.pb").read_bytes())
    raw = tf.compat.v1.wrap_function(
        lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
    raw = raw.prune(raw.graph.get_tensor_by_name("normalized_input_image_tensor:0"),
                    [raw.graph.get_tensor_by_name("concat:0"), raw.graph.get_tensor_by_name("concat_1:0")])
    anchors = tf.constant(np.load(base / "anchors.npy"))

    @tf.function(experimental_implements=postprocess_signature(cfg))
    def nms(box_encodings, class_scores, anchors):  # body replaced by the custom op
        del box_encodings, class_scores, anchors
        z = tf.constant(0.0)
        return z, z, z, z

    size, n = detector.INPUT_SIZE, anchors.shape[0]

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")])
    def network(image):
        box_encodings, logits = raw(image)
        return {"box_encodings": tf.squeeze(box_encodings, 2), "class_scores": tf.sigmoid(logits)}

    @tf.function(input_signature=[
        tf.TensorSpec([1, n, 4], tf.float32, name="box_encodings"),
        tf.TensorSpec([1, n, detector.NUM_CLASSES + 1], tf.float32, name="class_scores")])
    def postprocess(box_encodings, class_scores):
        return dict(zip(detector.OUTPUT_NAMES, nms(box_encodings, class_scores, anchors)))

    module = tf.Module()
    module.raw, module.network, module.postprocess = raw, network, postprocess
    tf.saved_model.save(module, str(out_dir),
                        signatures={"network": network, "postprocess": postprocess})
    return network


def representative(paths: list[str], network):
    """Calibration samples for both signatures, through exactly the evaluation preprocessing
    (the post-processing stays float; the converter still wants samples for it)."""
    from tqdm import tqdm
    for p in tqdm(paths, desc="calibrate", unit="img", disable=None):
        x = detector.preprocess(detector.load_image(p))
        yield "network", {"image": x}
        yield "postprocess", {k: v.numpy() for k, v in network(x).items()}


def convert(saved_model: Path, precision: str, calib: list[str], network) -> bytes:
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model),
                                                    signature_keys=["network", "postprocess"])
    conv.allow_custom_ops = True  # TFLite_Detection_PostProcess is a custom op of the runtime
    if precision == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic_int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: representative(calib, network)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--precision", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    precision = require_choice("precision", args.precision, detector.PRECISIONS)
    cfg = check_params(load_params(args.params))
    base = Path(args.base)
    for name in ("raw_graph.pb", "anchors.npy"):
        require_file(base / name, "exported detector (run det_export)")
    calib = calib_paths(args.calib, cfg["calib_size"]) if precision == "int8" else []
    with tempfile.TemporaryDirectory() as tmp:
        with timed("build SavedModel (network + post-processing signatures)"):
            network = build_saved_model(base, cfg, Path(tmp) / "saved_model")
        with timed(f"convert to {precision}"):
            model = convert(Path(tmp) / "saved_model", precision, calib, network)
    with atomic_path(args.out) as out:
        out.write_bytes(model)
    log.info("wrote %s (%.1f MB)", args.out, len(model) / 1e6)


if __name__ == "__main__":
    run_main(main)
