"""coco.source=local: a COCO-layout folder (images + instances JSON) and a separate folder of
calibration images, read in place. Roots are recorded as given in params.yaml."""
from __future__ import annotations

from pathlib import Path

from stages.core.files import require_dir
from stages.datasets.coco import (IMAGE_EXTS, calib_manifest, check_images, pick_calib, read_gt,
                                  select_ids, subset)


def build(cfg: dict, num_images: int, calib_size: int, seed: int, out: Path, tmp: Path):
    local = cfg["local"]
    images = require_dir(local["images"], "coco.local.images folder")
    calib_dir = require_dir(local["calib_images"], "coco.local.calib_images folder")
    gt = read_gt(local["annotations"])
    ids = select_ids((im["id"] for im in gt["images"]), num_images)
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    calib = pick_calib([p.name for p in calib_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS],
                       set(names.values()), calib_size, seed)
    check_images([images / names[i] for i in ids] + [calib_dir / n for n in calib])
    return (subset(gt, ids, images, local["images"]),
            calib_manifest(calib_dir, local["calib_images"], calib))
