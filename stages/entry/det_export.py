"""Export SSD MobileNet v2 COCO (ssd_mobilenet_v2_coco_2018_03_29) for conversion.

Writes models/detector/base/: the verified frozen graph, the sub-graph from the
normalized 300x300 input to the raw box encodings and class logits (raw_graph.pb),
the anchors extracted from the graph (anchors.npy, [ycenter, xcenter, h, w]) and
manifest.json. The graph's pre/post-processing constants are checked against
stages/models/ssd_mobilenet_v2.py, so a different graph fails here instead of mis-scoring.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info logs off

from stages.core.errors import log, run_main, timed
from stages.core.files import atomic_path
from stages.models import ssd_graph as G, ssd_mobilenet_v2 as ssd
from stages.schema.detector import Detector
from stages.schema.load import load_sections

PARAMS = ("detector.source",)
SCHEMAS = {"detector": Detector}  # validated here (check_params: the whole file)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    source = load_sections(args.params, PARAMS, SCHEMAS)["detector"]["source"]
    with timed(f"locate and verify the frozen graph ({source})"):
        graph = G.graph_path(source)
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph.read_bytes())
    G.check_graph(graph_def)
    with timed("extract anchors and the raw sub-graph"):
        raw, anchors = G.split_graph(graph_def)
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        shutil.copyfile(graph, tmp / "frozen_inference_graph.pb")
        (tmp / "raw_graph.pb").write_bytes(raw.SerializeToString(deterministic=True))
        np.save(tmp / "anchors.npy", ssd.anchors_to_center_size(anchors))
        (tmp / "manifest.json").write_text(json.dumps({
            "model": "ssd_mobilenet_v2_coco_2018_03_29", "source": source,
            "frozen_graph_sha256": G.GRAPH_SHA256, "raw_input": G.RAW_INPUT,
            "raw_outputs": list(G.RAW_OUTPUTS), "num_anchors": int(anchors.shape[0]),
            "num_classes": ssd.NUM_CLASSES, "box_scales": list(ssd.BOX_SCALES)},
            indent=2) + "\n")
    log.info("wrote %s (%d anchors)", args.out, anchors.shape[0])


if __name__ == "__main__":
    run_main(main)
