"""Run any detector runtime over a list of images, JPEG decoding prefetched in a thread."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from stages.models import ssd_mobilenet_v2 as ssd

PREFETCH = 2  # images decoded ahead of the interpreter


def prepare(path: Path) -> np.ndarray:
    return ssd.preprocess(ssd.load_image(path))


def detect_all(det, images: list[dict], paths: list[Path]) -> tuple[list[dict], float]:
    """COCO detections for every image and the wall time (decode + resize + invoke + COCO
    conversion); decoding overlaps inference."""
    from tqdm import tqdm
    results = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(prepare, p) for p in paths[:PREFETCH]]
        for k, im in enumerate(tqdm(images, desc="detect", unit="img", disable=None)):
            x = pending[k].result()
            if k + PREFETCH < len(images):
                pending.append(pool.submit(prepare, paths[k + PREFETCH]))
            pending[k] = None
            results += ssd.to_coco(im["id"], im["width"], im["height"], *det(x))
    return results, time.perf_counter() - t0


def open_detector(variant: str, model: str, data: str, threads: int):
    """(runtime, precision, detector, eval manifest, image paths) for det_eval and det_bench,
    after the checks that need no model: a known variant ("int8": LiteRT's, "openvino-int8"),
    the model file (LiteRT) or folder (the others), the manifest and every image's sha256."""
    from stages.core.errors import PipelineError
    from stages.core.files import require_dir, require_file
    from stages.datasets.coco import image_paths, read_manifest
    from stages.runtimes import detector
    from stages.schema.variants import split_variant

    try:
        runtime, precision = split_variant(variant)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    path = require_file(model, "detector model (run det_convert)") if runtime == "litert" else \
        require_dir(model, "detector model folder (run det_convert_rt)")
    gt = read_manifest(data, "evaluation manifest")
    paths = image_paths(gt, data)
    return runtime, precision, detector(runtime, path, threads), gt, paths
