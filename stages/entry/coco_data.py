"""Evaluation and calibration images for the detector: data/coco/{eval,calib}.json.

Sources (coco.source), one module each in stages/datasets/: offline (photographs in the
scikit-image wheel, no ground truth), local (a COCO folder read in place), official
(images.cocodataset.org). Calibration never shares an image with evaluation (checked on
content). See stages/datasets/coco.py for the manifest format.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import log, run_main, timed
from stages.core.files import atomic_path, write_json
from stages.datasets.coco import check_disjoint, source_module
from stages.schema.detector import Seed, Coco, Detector
from stages.schema.load import load_sections

PARAMS = ("seed", "coco", "detector.calib_size")
SCHEMAS = {"seed": Seed, "coco": Coco, "detector": Detector}  # validated here (check_params: the whole file)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_sections(args.params, PARAMS, SCHEMAS)
    source, seed = p["coco"]["source"], p["seed"]
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        with timed(f"prepare {source} images"):
            gt, calib = source_module(source).build(p["coco"], p["coco"]["num_images"],
                                                    p["detector"]["calib_size"], seed, args.out, tmp)
        check_disjoint(gt, calib)
        gt["source"] = source
        write_json(tmp / "eval.json", gt)
        write_json(tmp / "calib.json", {"source": source, "seed": seed, **calib})
    log.info("%s: %d evaluated images (ground truth: %s), %d calibration images",
             source, len(gt["images"]), gt["has_ground_truth"], len(calib["images"]))


if __name__ == "__main__":
    run_main(main)
