"""Checksummed, resumable downloads over https (requests + tqdm)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from stages.core.errors import PipelineError, log
from stages.core.files import verify_sha256


def _set_aside(path: Path, why: str) -> None:
    bad = path.with_name(path.name + ".bad")
    os.replace(path, bad)
    log.warning("%s: %s; moved it to %s and downloading again", path, why, bad)


def download(url: str, dest: str | os.PathLike, sha256: str | None, *, timeout: float = 60.0,
             chunk: int = 1 << 20) -> Path:
    """Download `url` to `dest` with a progress bar, resuming a partial `.part` file.

    The final file appears only after its sha256 matches `sha256` (when given). A cached
    `dest` that fails its checksum is moved aside to `<dest>.bad` and fetched again; a
    server that ignores the Range header restarts from zero; a mismatch after download
    deletes the partial file, so the next run starts clean.
    """
    import requests
    from tqdm import tqdm

    dest = Path(dest)
    if dest.is_file():
        try:
            verify_sha256(dest, sha256)
            return dest
        except PipelineError:
            _set_aside(dest, "cached file fails its checksum")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with requests.get(url, stream=True, timeout=timeout, headers=headers) as r:
            if r.status_code == 416:  # the partial file is already complete
                r.close()
            elif r.status_code >= 400:
                raise PipelineError(f"download of {url} failed: HTTP {r.status_code} {r.reason}")
            else:
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
        verify_sha256(part, sha256, name=f"{dest} (downloaded from {url})")
    except PipelineError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest
