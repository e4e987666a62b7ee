"""Helpers for the detector tests: tiny COCO folders, params files, manifest checks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_params(path: Path, **overrides) -> Path:
    """The repo's params.yaml with dotted overrides, e.g. {"coco.source": "local"}."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in overrides.items():
        node = params
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        if last not in node:
            raise KeyError(f"params.yaml has no {dotted}")  # a stale override fails loudly
        node[last] = value
    path.write_text(yaml.safe_dump(params))
    return path


def make_jpeg(path: Path, seed: int, size=(64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path)


def make_coco(root: Path, n_eval: int = 5, n_calib: int = 4, prefix: Path | None = None) -> dict:
    """A tiny COCO layout: images/, instances.json (ids deliberately unsorted), calib/.

    Returns params overrides pointing at it; with `prefix`, the paths are written as
    `prefix/...` (e.g. a path relative to the repo root) instead of `root/...`.
    """
    ids = [30, 10, 50, 20, 40][:n_eval]
    images = []
    for i in ids:
        name = f"{i:012d}.jpg"
        make_jpeg(root / "images" / name, i)
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
    anns = [{"id": k, "image_id": i, "category_id": 1, "bbox": [1, 2, 10, 20], "area": 200,
             "iscrowd": 0} for k, i in enumerate(ids, 1)]
    (root / "instances.json").write_text(json.dumps(
        {"info": {"description": "tiny"}, "licenses": [], "images": images, "annotations": anns,
         "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}))
    for k in range(n_calib):
        make_jpeg(root / "calib" / f"{900 + k:012d}.jpg", 900 + k)
    at = root if prefix is None else prefix
    return {"coco.source": "local", "coco.local.images": str(at / "images"),
            "coco.local.annotations": str(at / "instances.json"),
            "coco.local.calib_images": str(at / "calib")}


def strings(obj):
    """Every string anywhere inside a JSON value (keys included)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)
