"""coco.source=offline: real photographs shipped inside the scikit-image wheel, NO ground truth
(det_eval then reports agreement with float32, never a faked mAP). Calibration images are
seeded crops/flips of other photos of the same wheel, written into the stage's output."""
from __future__ import annotations

from pathlib import Path

from stages.core.files import sha256_file
from stages.datasets.coco import calib_manifest, package_root, root_ref

ROOT = "pkg:skimage/data"
# Split once by hand so the two sets never overlap (a test also compares their content).
EVAL = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
        "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg")
CALIB = ("brick.png", "clock_motion.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
         "moon.png", "page.png", "retina.jpg", "text.png")


def build(cfg: dict, num_images: int, calib_size: int, seed: int, out: Path, tmp: Path):
    import numpy as np
    from PIL import Image

    data = package_root(ROOT)
    images = []
    for i, name in enumerate(EVAL[: num_images or None], start=1):
        with Image.open(data / name) as im:
            images.append({"id": i, "file_name": name, "width": im.width, "height": im.height,
                           "sha256": sha256_file(data / name)})
    rng = np.random.default_rng(seed)
    (tmp / "calib").mkdir()
    names = []
    for k in range(calib_size):  # photo k % n, a random crop of 50..100% side, random flip
        with Image.open(data / CALIB[k % len(CALIB)]) as im:
            im = im.convert("RGB")
            frac = rng.uniform(0.5, 1.0)
            w, h = int(im.width * frac), int(im.height * frac)
            x, y = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
            im = im.crop((x, y, x + w, y + h))
            if rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            names.append(f"calib_{k:04d}.jpg")
            im.save(tmp / "calib" / names[-1], quality=95)
    gt = {"source": None, "has_ground_truth": False, "image_root": ROOT, "images": images,
          "annotations": [], "categories": []}
    calib = calib_manifest(tmp / "calib", root_ref(out / "calib"), names)
    return gt, calib
