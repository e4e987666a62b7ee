"""coco.source=official: checksummed annotations from images.cocodataset.org, the selected
val2017 images, and calibration images from another split (resumable downloads)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from stages.core.archive import extract_archive
from stages.core.download import download
from stages.datasets.coco import (calib_manifest, check_images, pick_calib, read_gt,
                                  read_image_list, root_ref, select_ids, subset)

COCO_URL = "https://images.cocodataset.org"   # official host; tests point it at 127.0.0.1
ANNOTATIONS_ZIP = "annotations/annotations_trainval2017.zip"
# Pinned by tensorflow_datasets (url_checksums/coco2017.txt). COCO publishes no per-image
# checksums: single images are checked by decoding them (see check_images).
ANNOTATIONS_SHA256 = "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268"
CACHE = Path(os.environ.get("COCO_CACHE", "data/.cache/coco"))  # resumable downloads


def fetch_image(split: str, file_name: str, dest: Path) -> Path:
    cached = download(f"{COCO_URL}/{split}/{file_name}", CACHE / split / file_name, None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, dest)
    return dest


def build(cfg: dict, num_images: int, calib_size: int, seed: int, out: Path, tmp: Path):
    from tqdm import tqdm

    split = cfg["official"]["calib_split"]
    zip_path = download(f"{COCO_URL}/{ANNOTATIONS_ZIP}", CACHE / Path(ANNOTATIONS_ZIP).name,
                        ANNOTATIONS_SHA256)
    members = ["annotations/instances_val2017.json", f"annotations/captions_{split}.json"]
    ann = CACHE / "extracted"
    if not all((ann / m).is_file() for m in members):
        extract_archive(zip_path, ann, members=members)
    gt = read_gt(ann / members[0])
    ids = select_ids((im["id"] for im in gt["images"]), num_images)
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    pool = [im["file_name"] for im in read_image_list(ann / members[1])]  # no `categories`
    calib = pick_calib(pool, set(names.values()), calib_size, seed)
    for i in tqdm(ids, desc="val2017 images", unit="img", disable=None):
        fetch_image("val2017", names[i], tmp / "val2017" / names[i])
    for name in tqdm(calib, desc=f"{split} images", unit="img", disable=None):
        fetch_image(split, name, tmp / split / name)
    check_images(tmp.rglob("*.jpg"))
    return (subset(gt, ids, tmp / "val2017", root_ref(out / "val2017")),
            calib_manifest(tmp / split, root_ref(out / split), calib))
