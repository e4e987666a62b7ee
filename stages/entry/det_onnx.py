"""Convert the exported detector network (models/detector/base/raw_graph.pb, the sub-graph
LiteRT converts) to one ONNX file with tf2onnx (see stages/methods/onnx_ptq.py for why this
path): input "image", outputs box_encodings and sigmoid class_scores. The ONNX Runtime and
OpenVINO variants (det_convert_rt) are all built from this file."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info logs off

from stages.core.errors import log, run_main, timed
from stages.core.files import atomic_path, require_file
from stages.runtimes.network_only import require

PARAMS = ()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--base", "--out"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args(argv)
    base = Path(args.base)
    require_file(base / "raw_graph.pb", "exported detector (run det_export)")
    for module in ("onnx", "tf2onnx"):
        require(module)
    from stages.methods.onnx_ptq import to_onnx
    with timed("tf2onnx conversion of the network"):
        model = to_onnx(base)
    with atomic_path(args.out) as out:
        out.write_bytes(model)
    log.info("wrote %s (%.1f MB)", args.out, len(model) / 1e6)


if __name__ == "__main__":
    run_main(main)
