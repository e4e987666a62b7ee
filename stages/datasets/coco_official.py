"""coco.source=official: checksummed annotations from images.cocodataset.org, the selected
val2017 images, and calibration images from another split (resumable downloads)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from stages.core.archive import extract_archive
from stages.core.download import download
from stages.core.errors import PipelineError
from stages.datasets.coco import (calib_manifest, check_images, pick_calib, read_gt,
                                  read_image_list, root_ref, select_ids, subset)

COCO_URL = "https://images.cocodataset.org"   # official host; tests point it at 127.0.0.1
ANNOTATIONS_ZIP = "annotations/annotations_trainval2017.zip"
# Pinned by tensorflow_datasets (url_checksums/coco2017.txt). COCO publishes no per-image
# checksums: each image is checked against the checksummed annotations' file list instead (its
# listed name, and its decoded width x height, see check_listed).
ANNOTATIONS_SHA256 = "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268"
CACHE = Path(os.environ.get("COCO_CACHE", "data/.cache/coco"))  # resumable downloads


def check_listed(images: dict[Path, dict]) -> None:
    """Every downloaded image decodes to the width x height the annotations list for it; a
    mismatch is one line naming the file, and its cached copy is removed (the next run fetches
    it again)."""
    from PIL import Image

    for path, listed in images.items():
        with Image.open(path) as im:
            size = im.size
        if size != (listed["width"], listed["height"]):
            (CACHE / path.parent.name / path.name).unlink(missing_ok=True)
            raise PipelineError(f"{path.parent.name}/{path.name} is {size[0]}x{size[1]}, the COCO "
                                f"annotations list it as {listed['width']}x{listed['height']}: a corrupt "
                                "or substituted download (its cached copy was removed; run again)")


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
    listed = read_image_list(ann / members[1])   # no `categories`
    pool = [im["file_name"] for im in listed]
    calib = pick_calib(pool, set(names.values()), calib_size, seed)
    for i in tqdm(ids, desc="val2017 images", unit="img", disable=None):
        fetch_image("val2017", names[i], tmp / "val2017" / names[i])
    for name in tqdm(calib, desc=f"{split} images", unit="img", disable=None):
        fetch_image(split, name, tmp / split / name)
    check_images(tmp.rglob("*.jpg"))
    val = {im["id"]: im for im in gt["images"]}
    by_name = {im["file_name"]: im for im in listed}
    check_listed({**{tmp / "val2017" / names[i]: val[i] for i in ids},
                  **{tmp / split / n: by_name[n] for n in calib}})
    return (subset(gt, ids, tmp / "val2017", root_ref(out / "val2017")),
            calib_manifest(tmp / split, root_ref(out / split), calib))
