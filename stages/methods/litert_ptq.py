"""LiteRT post-training conversion of the SSD network: float32, float16, full-integer int8
(calibrated), int16x8 (int16 activations, int8 weights, calibrated like int8; LiteRT runs it
on reference kernels, XNNPACK has none), dynamic-range int8. One .tflite with two signatures per precision:
  network      float32 image (1, 300, 300, 3) in [-1, 1] -> box_encodings, sigmoid class_scores
  postprocess  -> TFLite_Detection_PostProcess (anchor decoding with scales 10,10,5,5,
               per-class regular NMS) -> detection_boxes/classes/scores/num_detections
Two signatures, not one fused graph, so the NMS can run on a 1-thread interpreter while the
network uses several (see stages/runtimes/litert.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.core.errors import log
from stages.models import ssd_mobilenet_v2 as ssd

PRECISIONS = ("float32", "float16", "int8", "int16x8", "dynamic_int8")
CALIBRATED = ("int8", "int16x8")  # need representative images


def postprocess_signature(cfg: dict) -> str:
    """experimental_implements text that the converter turns into TFLite_Detection_PostProcess."""
    y, x, h, w = ssd.BOX_SCALES
    attrs = {"max_detections": f"i: {cfg['max_detections']}", "max_classes_per_detection": "i: 1",
             "detections_per_class": f"i: {cfg['max_detections']}", "use_regular_nms": "b: true",
             "nms_score_threshold": f"f: {cfg['score_threshold']}",
             "nms_iou_threshold": f"f: {cfg['iou_threshold']}", "y_scale": f"f: {y}",
             "x_scale": f"f: {x}", "h_scale": f"f: {h}", "w_scale": f"f: {w}",
             "num_classes": f"i: {ssd.NUM_CLASSES}"}
    return " ".join(['name: "TFLite_Detection_PostProcess"'] +
                    [f'attr {{ key: "{k}" value {{ {v} }} }}' for k, v in attrs.items()])


def fold_rsqrt_constants(graph_def) -> int:
    """Replace every Rsqrt of a constant (the frozen BatchNorm's 1/sqrt(var + eps)) by its
    correctly rounded value computed in numpy. Left to the converter, the fold runs TF's
    Eigen rsqrt (the CPU's approximate RSQRTPS plus one Newton step), whose last bits
    differ between CPU models, so the .tflite bytes would depend on the machine."""
    import tensorflow as tf
    nodes = {n.name: n for n in graph_def.node}

    def const_of(name):
        node = nodes[name.split(":")[0].lstrip("^")]
        while node.op == "Identity":
            node = nodes[node.input[0].split(":")[0]]
        if node.op == "Const":
            return tf.make_ndarray(node.attr["value"].tensor)
        if node.op in ("Add", "AddV2"):
            a, b = (const_of(i) for i in node.input[:2])
            return None if a is None or b is None else np.add(a, b, dtype=np.float32)
        return None

    folded = 0
    for node in graph_def.node:
        x = const_of(node.input[0]) if node.op == "Rsqrt" else None
        if x is None or x.dtype != np.float32:
            continue
        value = (1.0 / np.sqrt(x.astype(np.float64))).astype(np.float32)
        node.op = "Const"
        del node.input[:]
        node.attr.clear()
        node.attr["dtype"].type = tf.float32.as_datatype_enum
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        folded += 1
    return folded


def build_saved_model(base: Path, cfg: dict, out_dir: Path):
    """SavedModel with the "network" and "postprocess" signatures; returns the network."""
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((base / "raw_graph.pb").read_bytes())
    log.info("folded %d constant Rsqrt nodes in numpy", fold_rsqrt_constants(graph_def))
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

    size, n = ssd.INPUT_SIZE, anchors.shape[0]

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")])
    def network(image):
        box_encodings, logits = raw(image)
        return {"box_encodings": tf.squeeze(box_encodings, 2), "class_scores": tf.sigmoid(logits)}

    @tf.function(input_signature=[
        tf.TensorSpec([1, n, 4], tf.float32, name="box_encodings"),
        tf.TensorSpec([1, n, ssd.NUM_CLASSES + 1], tf.float32, name="class_scores")])
    def postprocess(box_encodings, class_scores):
        return dict(zip(ssd.OUTPUT_NAMES, nms(box_encodings, class_scores, anchors)))

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
        x = ssd.preprocess(ssd.load_image(p))
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
    elif precision == "int16x8":  # the post-processing custom op stays float (TFLITE_BUILTINS)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: representative(calib, network)
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv.convert()


def convert_to(base: Path, precision: str, nms: dict, calib: list[Path]) -> bytes:
    """The .tflite bytes of one precision (calib: representative images, CALIBRATED only)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        network = build_saved_model(base, nms, Path(tmp) / "saved_model")
        return convert(Path(tmp) / "saved_model", precision, [str(p) for p in calib], network)
