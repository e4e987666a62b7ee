"""Convert the exported detector to one LiteRT .tflite of one precision (see
stages/methods/litert_ptq.py): float32, float16, int8 (full-integer, calibrated on every
image of calib.json), int16x8 (calibrated the same way) or dynamic_int8. --metrics records the conversion's time and energy."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info logs off

from stages.core.errors import PipelineError, log, run_main, timed
from stages.core.files import atomic_path, require_file
from stages.datasets.coco import image_paths, read_manifest
from stages.meters import energy as E
from stages.methods.litert_ptq import CALIBRATED, PRECISIONS, convert_to
from stages.schema import metrics as M
from stages.schema.common import Energy
from stages.schema.detector import Detector
from stages.schema.load import load_sections

PARAMS = ("detector.score_threshold", "detector.iou_threshold", "detector.max_detections") + E.PARAMS
SCHEMAS = {"detector": Detector, "energy": Energy}  # validated here (check_params: the whole file)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--precision", "--base", "--calib", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--metrics", help="JSON of the conversion's time and energy (dvc.yaml passes it)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    if args.precision not in PRECISIONS:
        raise PipelineError(f"unknown precision {args.precision!r}; expected one of {PRECISIONS}")
    p = load_sections(args.params, PARAMS, SCHEMAS)
    nms, meter = p["detector"], E.open_meter(p["energy"])
    base = Path(args.base)
    for name in ("raw_graph.pb", "anchors.npy"):
        require_file(base / name, "exported detector (run det_export)")
    calib = []
    if args.precision in CALIBRATED:
        calib = image_paths(read_manifest(args.calib, "calibration list"), args.calib)
    with timed(f"convert to {args.precision}" + (f" ({len(calib)} calibration images)" if calib else "")):
        t0 = time.perf_counter()
        model, energy = meter.once(lambda: convert_to(base, args.precision, nms, calib), 1, "run")
        seconds = time.perf_counter() - t0
    with atomic_path(args.out) as out:
        out.write_bytes(model)
    if args.metrics:
        M.write(args.metrics, M.DetConvert(precision=args.precision, convert_time_s=round(seconds, 2),
                                           size_mb=len(model) / 1e6, compress_energy=energy))
    log.info("wrote %s (%.1f MB); conversion %.0f J (%s)", args.out, len(model) / 1e6,
             energy["joules"], energy["method"])


if __name__ == "__main__":
    run_main(main)
