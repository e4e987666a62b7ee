"""COCO-format detection data: the manifests coco_data writes and every detector stage reads.

eval.json  {"source", "has_ground_truth", "image_root", "images": [{id, file_name, width,
           height, sha256}], "annotations", "categories"} (COCO ground truth of the
           evaluated images);
calib.json {"source", "seed", "image_root", "images": [{file_name, sha256}]}.
`image_root` is a reference, never the clone's or the venv's absolute path: `pkg:<package>/
<folder>` for images shipped inside an installed package, else a path as given in params
or relative to the repo root. So the manifests hash the same in every clone.
A source is a module `stages/datasets/coco_<source>.py` with
`build(cfg, num_images, calib_size, seed, out, tmp) -> (eval manifest, calib manifest)`.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import random
from pathlib import Path

from stages.core.errors import PipelineError
from stages.core.files import read_json, sha256_file

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def source_module(name: str):
    """The module of one COCO source (the schema restricts `name` to the known sources)."""
    return importlib.import_module(f"stages.datasets.coco_{name}")


def package_root(ref: str) -> Path:
    """`pkg:skimage/data` -> <site-packages>/skimage/data, found without importing it."""
    package, _, sub = ref[4:].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(f"package {package!r} is not installed (needed for {ref})")
    return Path(list(spec.submodule_search_locations)[0]) / sub


def root_ref(folder: Path) -> str:
    """A folder the stage wrote, as a path relative to the working directory (the repo root)."""
    return os.path.relpath(folder.resolve(), Path.cwd())


def resolve_root(ref: str) -> Path:
    return package_root(ref) if ref.startswith("pkg:") else Path(ref)


def image_paths(manifest: dict, where: str) -> list[Path]:
    """Every image of a manifest as a path, each checked against its recorded sha256."""
    root = resolve_root(manifest["image_root"])
    out = []
    for im in manifest["images"]:
        p = root / im["file_name"]
        if not p.is_file():
            raise PipelineError(f"image listed in {where} not found: {p}")
        if sha256_file(p) != im["sha256"]:
            raise PipelineError(f"checksum mismatch for {p}: it changed since coco_data listed it "
                                "(rerun coco_data)")
        out.append(p)
    return out


def read_manifest(path: str | Path, what: str) -> dict:
    data = read_json(path, what)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
            not data["images"] or "image_root" not in data:
        raise PipelineError(f"{path} lists no images (run coco_data)")
    if data.get("has_ground_truth") and not isinstance(data.get("annotations"), list):
        raise PipelineError(f"{path} claims ground truth but has no annotations")
    return data


def select_ids(image_ids, num_images: int) -> list[int]:
    """The first num_images ids in sorted order (0 = all)."""
    ids = sorted(set(image_ids))
    return ids if num_images == 0 else ids[:num_images]


def read_gt(path) -> dict:
    gt = read_json(path, "COCO annotations")
    if not isinstance(gt, dict) or not all(isinstance(gt.get(k), list)
                                           for k in ("images", "annotations", "categories")):
        raise PipelineError(f"{path} is not a COCO instances file (images/annotations/categories)")
    return gt


def read_image_list(path) -> list[dict]:
    """The `images` of any official COCO file (instances, captions: captions have no
    `categories`)."""
    data = read_json(path, "COCO annotations")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise PipelineError(f"{path} is not a COCO annotation file (no 'images' list)")
    return data["images"]


def subset(gt: dict, ids: list[int], root: Path, image_root: str) -> dict:
    """COCO ground truth restricted to `ids`, each image entry with its file's sha256."""
    keep = set(ids)
    images = [{"id": im["id"], "file_name": im["file_name"], "width": im["width"],
               "height": im["height"], "sha256": sha256_file(root / im["file_name"])}
              for im in gt["images"] if im["id"] in keep]
    return {"source": None, "has_ground_truth": True, "image_root": image_root,
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


def pick_calib(names: list[str], exclude: set[str], calib_size: int, seed: int) -> list[str]:
    """A seeded draw of calib_size file names that are not evaluated."""
    pool = sorted(n for n in names if n not in exclude)
    if calib_size > len(pool):
        raise PipelineError(f"detector.calib_size={calib_size} but only {len(pool)} calibration "
                            "images are available (disjoint from evaluation)")
    return sorted(random.Random(seed).sample(pool, calib_size))


def calib_manifest(root: Path, image_root: str, names: list[str]) -> dict:
    return {"image_root": image_root,
            "images": [{"file_name": n, "sha256": sha256_file(root / n)} for n in names]}


def check_disjoint(evals: dict, calib: dict) -> None:
    """Calibration and evaluation never share an image, compared on content (sha256)."""
    shared = {im["sha256"] for im in evals["images"]} & {im["sha256"] for im in calib["images"]}
    if shared:
        names = [im["file_name"] for im in calib["images"] if im["sha256"] in shared]
        raise PipelineError(f"{len(shared)} calibration image(s) are also evaluated (same bytes): "
                            f"{names[:3]}")
