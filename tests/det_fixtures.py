"""Helpers for the detector tests: tiny COCO folders, params files, a Range-capable server."""
from __future__ import annotations

import functools
import http.server
import json
import os
import threading
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
        node[last] = value
    path.write_text(yaml.safe_dump(params))
    return path


def make_jpeg(path: Path, seed: int, size=(64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path)


def make_coco(root: Path, n_eval: int = 5, n_calib: int = 4) -> dict:
    """A tiny COCO layout: images/, instances.json (ids deliberately unsorted), calib/."""
    ids = [30, 10, 50, 20, 40][:n_eval]
    images = []
    for i in ids:
        name = f"{i:012d}.jpg"
        make_jpeg(root / "images" / name, i)
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
    anns = [{"id": k, "image_id": i, "category_id": 1, "bbox": [1, 2, 10, 20], "area": 200,
             "iscrowd": 0} for k, i in enumerate(ids, 1)]
    (root / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    for k in range(n_calib):
        make_jpeg(root / "calib" / f"{900 + k:012d}.jpg", 900 + k)
    return {"coco.source": "local", "coco.local.images": str(root / "images"),
            "coco.local.annotations": str(root / "instances.json"),
            "coco.local.calib_images": str(root / "calib")}


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single Range support (for resume tests); records requests."""
    requests: list = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return self.send_error(404)
        data = path.read_bytes()
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


def serve(folder: Path):
    """Start a 127.0.0.1 server on `folder`; returns (base_url, server)."""
    RangeHandler.requests = []
    handler = functools.partial(RangeHandler, directory=os.fspath(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server
