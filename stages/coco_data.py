"""Evaluation and calibration images for the detector: data/coco/{eval,calib}.json.

eval.json is a COCO ground-truth dict for the evaluated images (each image entry also
holds its absolute `path`) plus `source` and `has_ground_truth`; calib.json lists
calibration image paths, never overlapping the evaluated ones. Sources (coco.source):
  offline   real photographs shipped inside the scikit-image wheel; NO ground truth
            (det_eval then reports agreement with float32, never a faked mAP)
  local     a COCO-layout folder read in place (coco.local.*)
  official  images.cocodataset.org: checksummed annotations, val2017 images, and
            calibration images from coco.official.calib_split (stages/coco_official.py)
"""
from __future__ import annotations

import argparse
import importlib.util
import random
from pathlib import Path

from stages.common import (PipelineError, atomic_path, get_param, load_params, log, read_json,
                           require_choice, require_dir, require_int, run_main, timed, write_json)

SOURCES = ("offline", "local", "official")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
# offline: skimage/data photographs, split once by hand so the two sets never overlap.
OFFLINE_EVAL = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
                "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg")
OFFLINE_CALIB = ("brick.png", "clock_motion.png", "grass.png", "gravel.png",
                 "hubble_deep_field.jpg", "moon.png", "page.png", "retina.jpg", "text.png")


def select_ids(image_ids, num_images: int) -> list[int]:
    """The first num_images ids in sorted order (0 = all)."""
    ids = sorted(set(image_ids))
    return ids if num_images == 0 else ids[:num_images]


def subset(gt: dict, ids: list[int], paths: dict[int, str]) -> dict:
    """COCO ground truth restricted to `ids`, each image entry with its absolute path."""
    keep = set(ids)
    images = [dict(im, path=paths[im["id"]]) for im in gt["images"] if im["id"] in keep]
    return {"source": None, "has_ground_truth": True,
            "images": sorted(images, key=lambda im: im["id"]),
            "annotations": [a for a in gt["annotations"] if a["image_id"] in keep],
            "categories": gt["categories"]}


def check_images(paths) -> None:
    """Fully decode every image before any heavy work: a clear error names the bad file."""
    from PIL import Image
    from tqdm import tqdm
    for p in tqdm(list(paths), desc="check images", unit="img", disable=None):
        try:
            with Image.open(p) as im:
                im.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise PipelineError(f"unreadable image {p}: {exc}") from None


def read_gt(path) -> dict:
    gt = read_json(path, "COCO annotations")
    if not isinstance(gt, dict) or not all(isinstance(gt.get(k), list)
                                           for k in ("images", "annotations", "categories")):
        raise PipelineError(f"{path} is not a COCO instances file (images/annotations/categories)")
    return gt


def pick_calib(candidates: list[Path], exclude: set[str], calib_size: int, seed: int) -> list[Path]:
    """A seeded draw of calib_size images whose file names are not evaluated."""
    pool = sorted(p for p in candidates if p.name not in exclude)
    if calib_size > len(pool):
        raise PipelineError(f"detector.calib_size={calib_size} but only {len(pool)} calibration "
                            "images are available (disjoint from evaluation)")
    return sorted(random.Random(seed).sample(pool, calib_size))


def local_source(cfg: dict, num_images: int, calib_size: int, seed: int):
    images = require_dir(cfg["images"], "coco.local.images folder").resolve()
    calib_dir = require_dir(cfg["calib_images"], "coco.local.calib_images folder")
    gt = read_gt(cfg["annotations"])
    ids = select_ids((im["id"] for im in gt["images"]), num_images)
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    paths = {i: str(images / names[i]) for i in ids}
    calib = pick_calib([p.resolve() for p in calib_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS],
                       set(names.values()), calib_size, seed)
    check_images(list(paths.values()) + calib)
    return subset(gt, ids, paths), [str(p) for p in calib]


def offline_source(num_images: int, calib_size: int, seed: int, out_final: Path, tmp: Path):
    """skimage photos; calibration = deterministic crops/flips of the calib-only photos."""
    import numpy as np
    from PIL import Image
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        raise PipelineError("coco.source=offline needs scikit-image (its wheel ships the photos)")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    images = []
    for i, name in enumerate(OFFLINE_EVAL[: num_images or None], start=1):
        with Image.open(data / name) as im:
            images.append({"id": i, "file_name": name, "width": im.width, "height": im.height,
                           "path": str(data / name)})
    rng = np.random.default_rng(seed)
    (tmp / "calib").mkdir()
    calib = []
    for k in range(calib_size):  # photo k % n, a random crop of 50..100% side, random flip
        with Image.open(data / OFFLINE_CALIB[k % len(OFFLINE_CALIB)]) as im:
            im = im.convert("RGB")
            frac = rng.uniform(0.5, 1.0)
            w, h = int(im.width * frac), int(im.height * frac)
            x, y = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
            im = im.crop((x, y, x + w, y + h))
            if rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            im.save(tmp / "calib" / f"calib_{k:04d}.jpg", quality=95)
        calib.append(str(out_final / "calib" / f"calib_{k:04d}.jpg"))
    return {"source": None, "has_ground_truth": False, "images": images, "annotations": [],
            "categories": []}, calib


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    seed = require_int("seed", get_param(params, "seed"))
    source = require_choice("coco.source", get_param(params, "coco.source"), SOURCES)
    num_images = require_int("coco.num_images", get_param(params, "coco.num_images"), 0)
    calib_size = require_int("detector.calib_size", get_param(params, "detector.calib_size"), 1)
    out_final = Path(args.out).resolve()
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        with timed(f"prepare {source} images"):
            if source == "local":
                gt, calib = local_source(get_param(params, "coco.local"), num_images, calib_size, seed)
            elif source == "offline":
                gt, calib = offline_source(num_images, calib_size, seed, out_final, tmp)
            else:
                from stages.coco_official import official_source
                gt, calib = official_source(get_param(params, "coco.official"), num_images,
                                            calib_size, seed, out_final, tmp)
        gt["source"] = source
        write_json(tmp / "eval.json", gt)
        write_json(tmp / "calib.json", {"source": source, "seed": seed, "images": calib})
    log.info("%s: %d evaluated images (ground truth: %s), %d calibration images",
             source, len(gt["images"]), gt["has_ground_truth"], len(calib))


if __name__ == "__main__":
    run_main(main)
