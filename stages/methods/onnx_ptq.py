"""The detector network as ONNX (tf2onnx) and its ONNX Runtime / OpenVINO variants:
  onnxruntime-float32  the tf2onnx model as is
  onnxruntime-int8     static QDQ int8 (onnxruntime.quantization.quantize_static: per-channel
                       u8 weights, u8 activations, MinMax calibration; see ort_int8)
  openvino-float32     openvino.convert_model of the ONNX file, saved as IR without fp16
  openvino-int8        nncf.quantize of that model (post-training, default preset, the
                       overflow fix of detector.ptq.overflow_fix; see openvino_ir)
detector.ptq.float_box_head keeps the six BoxEncodingPredictor convs (box regression, 6 of
76 convs) in float32 in both int8 variants. On the shared 206-image val2017 sample it raised
the agreement with LiteRT float32 from 0.879 to 0.906 (ONNX Runtime) and, with the overflow
fix in every layer, from 0.873 to 0.931 (OpenVINO); the box encodings' error on confident
anchors was 0.100 (ORT) / 0.092 (OV) against LiteRT int8's 0.079. MinMax, percentile and
entropy calibration, NNCF's MIXED preset and full bias correction gave 0.87-0.89.
Both int8 variants calibrate on every image of calib.json through exactly the evaluation
preprocessing. Only the network is converted (normalized image -> box_encodings, sigmoid
class_scores, the same sub-graph as LiteRT's "network" signature); the post-processing of
these runtimes is stages/models/ssd_nms.py.

Why tf2onnx on the frozen GraphDef: the graph is TF1 (a frozen GraphDef, no SavedModel), and
tf2onnx 1.17 converts a GraphDef directly with the pinned TF 2.21; tf->TFLite->ONNX would
inherit LiteRT's rewrites, and OpenVINO reading the TF graph directly would give a second
network instead of the same file for both runtimes.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from stages.methods.litert_ptq import fold_rsqrt_constants
from stages.models import ssd_mobilenet_v2 as ssd

OPSET = 17
INPUT, OUTPUTS = "image", ("box_encodings", "class_scores")
OUTPUT_CONCATS = ("concat", "concat_1")  # tf2onnx's names of the graph's two output Concats


def network_graph(base: Path):
    """raw_graph.pb with its Rsqrt constants folded in numpy (machine-independent bits, as for
    LiteRT) and the two outputs of LiteRT's "network" signature added."""
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((base / "raw_graph.pb").read_bytes())
    fold_rsqrt_constants(graph_def)
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph_def, name="")
        tf.identity(tf.squeeze(g.get_tensor_by_name("concat:0"), 2), name=OUTPUTS[0])
        tf.identity(tf.sigmoid(g.get_tensor_by_name("concat_1:0")), name=OUTPUTS[1])
    return g.as_graph_def()


def to_onnx(base: Path) -> bytes:
    """The network as ONNX bytes; input "image", outputs box_encodings and class_scores."""
    import onnx
    import tf2onnx
    model, _ = tf2onnx.convert.from_graph_def(
        network_graph(base), input_names=["normalized_input_image_tensor:0"],
        output_names=[f"{n}:0" for n in OUTPUTS], opset=OPSET)
    rename = {"normalized_input_image_tensor:0": INPUT, **{f"{n}:0": n for n in OUTPUTS}}
    for node in model.graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    for value in list(model.graph.input) + list(model.graph.output):
        value.name = rename.get(value.name, value.name)
    model.producer_version = ""  # no tf2onnx build string: the file depends on the graph only
    canonical_constants(model.graph)
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def canonical_constants(graph) -> None:
    """tf2onnx merges equal constants (e.g. every Relu6's 0 and 6) under whichever name a set
    iteration yields first, so the names, and the bytes, changed with PYTHONHASHSEED. Name
    every initializer by its first use in node order, and store them in that order."""
    inits = {i.name: i for i in graph.initializer}
    names: dict[str, str] = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in inits:
                node.input[k] = names.setdefault(name, f"const_{len(names)}")
    ordered = []
    for old in list(names) + [n for n in inits if n not in names]:
        init = type(inits[old])()
        init.CopyFrom(inits[old])
        init.name = names.get(old, old)
        ordered.append(init)
    del graph.initializer[:]
    graph.initializer.extend(ordered)


def samples(paths: list[Path]):
    """Calibration inputs through exactly the evaluation preprocessing."""
    from tqdm import tqdm
    for p in tqdm(paths, desc="calibrate", unit="img", disable=None):
        yield ssd.preprocess(ssd.load_image(p))


BOX_HEAD = "BoxEncodingPredictor"  # name part of the box-regression convs (ONNX and OpenVINO)


def box_head_nodes(onnx_file: Path) -> list[str]:
    """Names of the box-regression Conv nodes (six, one per feature map)."""
    import onnx
    model = onnx.load(str(onnx_file), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type == "Conv" and BOX_HEAD in n.name]


def ort_int8(onnx_file: Path, calib: list[Path], out: Path, float_box_head: bool) -> None:
    """Static QDQ int8 with ONNX Runtime's quantizer, calibrated on `calib`.

    U8 weights, not the default S8: on AVX2 CPUs without VNNI (this machine), ORT's U8S8
    kernels use VPMADDUBSW, whose int16 sums saturate (ORT's quantization docs); agreement
    with LiteRT float32 on 60 val2017 images was 0.47 with U8S8, 0.68 S8S8, 0.84 U8S8 +
    reduce_range, 0.87 U8U8, 0.88 U8U8 with the two output Concats left in float (kept:
    one scale for 1917 boxes of six heads is coarse)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = samples(calib)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {INPUT: x}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(onnx_file), str(pre), skip_symbolic_shape=True)
        excluded = list(OUTPUT_CONCATS) + (box_head_nodes(pre) if float_box_head else [])
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QUInt8, nodes_to_exclude=excluded)


def openvino_ir(onnx_file: Path, precision: str, calib: list[Path], out: Path, ptq: dict) -> None:
    """OpenVINO IR (out/model.xml + .bin) of the ONNX network; int8 through NNCF.

    ptq["overflow_fix"]: CPUs without VNNI (AVX2 only, like this one) multiply u8 x s8 with
    int16 intermediate sums that saturate; NNCF's fix quantizes weights to 7 bits ("enable":
    every layer; "first_layer": NNCF's default). Agreement on the shared sample: 0.725
    disabled, 0.873 first layer, 0.880 every layer (0.931 with the float box head)."""
    import openvino as ov
    model = ov.convert_model(str(onnx_file))
    if precision == "int8":
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
        fix = {"enable": OverflowFix.ENABLE, "first_layer": OverflowFix.FIRST_LAYER,
               "disable": OverflowFix.DISABLE}[ptq["overflow_fix"]]
        ignored = nncf.IgnoredScope(patterns=[f".*{BOX_HEAD}.*"] if ptq["float_box_head"] else [])
        data = nncf.Dataset(list(samples(calib)))
        model = nncf.quantize(model, data, subset_size=len(calib), ignored_scope=ignored,
                              advanced_parameters=AdvancedQuantizationParameters(overflow_fix=fix))
    ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)
