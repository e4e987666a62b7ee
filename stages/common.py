"""Shared helpers for every stage: params, clear errors, atomic writes, checksummed downloads.

Nothing here imports TensorFlow or torch, so every stage can validate its inputs
before any heavy library loads.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import yaml

log = logging.getLogger("pipeline")


class PipelineError(Exception):
    """A user-facing error: bad params, missing or corrupt input. Printed without a traceback."""


def setup_logging() -> None:
    """Short stage logs on stderr."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def run_main(main, argv: list[str] | None = None) -> None:
    """Run a stage's main(); turn PipelineError into a one-line message and exit code 2."""
    setup_logging()
    try:
        main(argv)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """Log what a stage is doing and how long it took."""
    log.info("%s ...", what)
    t0 = time.perf_counter()
    yield
    log.info("%s done in %.1f s", what, time.perf_counter() - t0)


# ---------------------------------------------------------------- params
def load_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise PipelineError(f"params file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise PipelineError(f"params file {p} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"params file {p} must hold a mapping")
    return data


def get_param(params: dict, dotted: str) -> Any:
    """params['a']['b'] for 'a.b', with a clear error naming the missing key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise PipelineError(f"missing param '{dotted}' in params.yaml")
        node = node[part]
    return node


def as_list(value: Any) -> list:
    """Accept a scalar or a list: `dvc exp run -S quant.bits=4` turns a list into a scalar."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def require_int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PipelineError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise PipelineError(f"{name} must be >= {minimum}, got {value}")
    return value


def require_number(name: str, value: Any, low: float, high: float, open_ends: bool = False) -> float:
    """A real number in [low, high] (or in (low, high) with open_ends), else a clear error."""
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or not ((low < value < high) if open_ends else (low <= value <= high)):
        span = f"({low}, {high})" if open_ends else f"[{low}, {high}]"
        raise PipelineError(f"{name} must be a number in {span}, got {value!r}")
    return float(value)


def require_choice(name: str, value: Any, choices) -> Any:
    if value not in choices:
        raise PipelineError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")
    return value


# ---------------------------------------------------------------- files
def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    p = Path(path)
    if not p.is_file():
        raise PipelineError(f"{what} not found: {p}")
    return p


def require_dir(path: str | os.PathLike, what: str = "folder") -> Path:
    p = Path(path)
    if not p.is_dir():
        raise PipelineError(f"{what} not found: {p}")
    return p


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    p = require_file(path, what)
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{what} {p} is corrupt: {exc}") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str | None) -> str:
    """Return the file's sha256; raise PipelineError when it differs from `expected`."""
    got = sha256_file(path)
    if expected and got != expected.lower():
        raise PipelineError(f"checksum mismatch for {path}: expected sha256 {expected}, got {got}")
    return got


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; move it onto `dest` only if the block succeeds.

    Works for files and folders. An interrupted stage leaves `dest` as it was
    (or absent), never half-written.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent)) / dest.name
    try:
        yield tmp
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write pretty, key-stable JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def dir_size_mb(path: str | os.PathLike) -> float:
    """Size on disk of a file or every file below a folder, in MB (10^6 bytes)."""
    p = Path(path)
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


# ---------------------------------------------------------------- downloads
def download(url: str, dest: str | os.PathLike, sha256: str | None, *, timeout: float = 60.0,
             chunk: int = 1 << 20) -> Path:
    """Download `url` to `dest` with a progress bar, resuming a partial `.part` file.

    The final file appears only after its sha256 matches `sha256` (when given). A
    server that ignores the Range header restarts the download from zero; a
    mismatch deletes the partial file so the next run starts clean.
    """
    import requests
    from tqdm import tqdm

    dest = Path(dest)
    if dest.is_file():
        verify_sha256(dest, sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with requests.get(url, stream=True, timeout=timeout, headers=headers) as r:
            if r.status_code == 416:  # the partial file is already complete
                r.close()
            else:
                r.raise_for_status()
                if have and r.status_code != 206:  # no resume support: start over
                    have = 0
                total = int(r.headers.get("Content-Length", 0)) + have or None
                with open(part, "ab" if have else "wb") as f, tqdm(
                        total=total, initial=have, unit="B", unit_scale=True,
                        desc=dest.name, file=sys.stderr, disable=None) as bar:
                    for block in r.iter_content(chunk):
                        f.write(block)
                        bar.update(len(block))
    except requests.RequestException as exc:
        raise PipelineError(f"download of {url} failed: {exc} (rerun to resume)") from None
    try:
        verify_sha256(part, sha256)
    except PipelineError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def _safe_target(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if not target.is_relative_to(root.resolve()):
        raise PipelineError(f"archive member escapes the target folder: {name!r}")
    return target


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike,
                    members: list[str] | None = None) -> Path:
    """Extract a .tar(.gz) or .zip into `dest`, refusing absolute paths, `..` and links.

    `members` limits extraction to those names. The folder appears atomically.
    """
    archive, dest = Path(archive), Path(dest)
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                names = members or zf.namelist()
                for name in names:
                    _safe_target(tmp, name)
                zf.extractall(tmp, members=names)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                infos = [tf.getmember(m) for m in members] if members else tf.getmembers()
                for info in infos:
                    _safe_target(tmp, info.name)
                    if info.issym() or info.islnk() or info.isdev():
                        raise PipelineError(f"archive member is a link or device: {info.name!r}")
                tf.extractall(tmp, members=infos, filter="data")
        else:
            raise PipelineError(f"not a tar or zip archive (corrupt?): {archive}")
    return dest
