"""Build one ONNX Runtime or OpenVINO variant of the detector (stages/methods/onnx_ptq.py)
from the ONNX network: a folder with the runtime's model file, the anchors and
postprocess.json (the NMS settings, as det_convert bakes them into each .tflite), read by
stages/runtimes/<runtime>.py. int8 variants calibrate on every image of calib.json."""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from stages.core.errors import PipelineError, log, run_main, timed
from stages.core.files import atomic_path, require_file
from stages.datasets.coco import image_paths, read_manifest
from stages.meters import energy as E
from stages.runtimes.network_only import ANCHORS, POSTPROCESS, require
from stages.schema import metrics as M
from stages.schema.common import Energy
from stages.schema.detector import Detector
from stages.schema.load import load_sections
from stages.schema.variants import packages, split_variant

PARAMS = ("detector.score_threshold", "detector.iou_threshold", "detector.max_detections",
          "detector.ptq") + E.PARAMS
SCHEMAS = {"detector": Detector, "energy": Energy}  # validated here (check_params: the whole file)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--variant", "--onnx", "--base", "--calib", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--metrics", help="JSON of the build's time and energy (dvc.yaml passes it)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    try:
        runtime, precision = split_variant(args.variant)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    if runtime == "litert":
        raise PipelineError(f"{args.variant!r} is a LiteRT precision: built by det_convert")
    p = load_sections(args.params, PARAMS, SCHEMAS)
    det, meter = p["detector"], E.open_meter(p["energy"])
    nms = {k: det[k] for k in ("score_threshold", "iou_threshold", "max_detections")}
    onnx_file = require_file(args.onnx, "ONNX network (run det_onnx)")
    anchors = require_file(Path(args.base) / ANCHORS, "exported detector (run det_export)")
    for module in packages(args.variant):
        require(module)
    calib = []
    if precision == "int8":
        calib = image_paths(read_manifest(args.calib, "calibration list"), args.calib)
    from stages.methods import onnx_ptq

    def build(out: Path) -> None:
        if runtime == "openvino":
            onnx_ptq.openvino_ir(onnx_file, precision, calib, out, det["ptq"])
        elif precision == "int8":
            onnx_ptq.ort_int8(onnx_file, calib, out / "model.onnx", det["ptq"]["float_box_head"])
        else:
            shutil.copyfile(onnx_file, out / "model.onnx")

    with atomic_path(args.out) as out:
        out.mkdir()
        with timed(f"build {args.variant}" + (f" ({len(calib)} calibration images)" if calib else "")):
            t0 = time.perf_counter()
            _, energy = meter.once(lambda: build(out), 1, "run")
            seconds = time.perf_counter() - t0
        shutil.copyfile(anchors, out / ANCHORS)
        (out / POSTPROCESS).write_text(json.dumps(
            {"runtime": runtime, "precision": precision, **nms,
             **({"ptq": det["ptq"]} if precision == "int8" else {})}, indent=2, sort_keys=True) + "\n")
    size = sum(f.stat().st_size for f in Path(args.out).iterdir())
    if args.metrics:
        M.write(args.metrics, M.DetConvert(precision=args.variant, convert_time_s=round(seconds, 2),
                                           size_mb=size / 1e6, compress_energy=energy))
    log.info("wrote %s (%.1f MB); build %.0f J (%s)", args.out, size / 1e6, energy["joules"],
             energy["method"])


if __name__ == "__main__":
    run_main(main)
