"""Files: clear errors for missing or corrupt inputs, checksums, atomic outputs."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from stages.core.errors import PipelineError, log

TMP_MARK = ".tmp-"  # prefix of atomic_path's temporary siblings (cleaned on the next run)


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


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """UTF-8 text; a non-UTF-8 byte is a clear error naming the line."""
    raw = require_file(path, what).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise PipelineError(f"{what} {path}:{line}: not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start})") from None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    text = read_text(path, what)
    if not text.strip():
        raise PipelineError(f"{what} {path} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{what} {path} is corrupt: {exc}") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str | None, name: str | None = None) -> str:
    """The file's sha256; PipelineError naming `name` (default: the path) when it differs."""
    got = sha256_file(path)
    if expected and got != expected.lower():
        raise PipelineError(f"checksum mismatch for {name or path}: expected sha256 {expected}, "
                            f"got {got}")
    return got


def clean_stale(dest: Path) -> None:
    """Remove temporary siblings of `dest` left by a killed run (see atomic_path)."""
    for old in dest.parent.glob(f"{TMP_MARK}{dest.name}.*"):
        log.info("removing %s, left by an interrupted run", old)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; move it onto `dest` only if the block succeeds.

    Works for files and folders. An old folder is renamed aside before the new one moves in
    and deleted only afterwards, so a kill at any moment leaves either the old or the new
    complete output at `dest` (plus a temporary sibling that the next run removes).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(dest)
    work = Path(tempfile.mkdtemp(prefix=f"{TMP_MARK}{dest.name}.", dir=dest.parent))
    tmp = work / dest.name
    try:
        yield tmp
        if dest.is_dir() and not dest.is_symlink():
            os.replace(dest, work / "old")   # atomic rename aside, then the atomic swap
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write pretty, key-stable JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def dir_size_mb(path: str | os.PathLike) -> float:
    """Size on disk of a file or every file below a folder, in MB (10^6 bytes)."""
    p = Path(path)
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6
