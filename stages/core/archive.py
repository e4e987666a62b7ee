"""Safe extraction of .tar(.gz) and .zip archives: no absolute paths, `..`, links or devices."""
from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from pathlib import Path

from stages.core.errors import PipelineError
from stages.core.files import atomic_path


def _safe_target(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if not target.is_relative_to(root.resolve()):
        raise PipelineError(f"archive member escapes the target folder: {name!r}")
    return target


def _missing(archive: Path, members: list[str] | None, names: list[str]) -> None:
    absent = sorted(set(members or []) - set(names))
    if absent:
        raise PipelineError(f"archive {archive} lacks {absent} (wrong or truncated file?)")


def _extract_zip(archive: Path, tmp: Path, members: list[str] | None) -> None:
    with zipfile.ZipFile(archive) as zf:
        _missing(archive, members, zf.namelist())
        names = members or zf.namelist()
        for name in names:
            _safe_target(tmp, name)
        zf.extractall(tmp, members=names)


def _extract_tar(archive: Path, tmp: Path, members: list[str] | None) -> None:
    with tarfile.open(archive) as tf:
        infos = tf.getmembers()
        _missing(archive, members, [i.name for i in infos])
        infos = [i for i in infos if i.name in set(members)] if members else infos
        for info in infos:
            _safe_target(tmp, info.name)
            if info.issym() or info.islnk() or info.isdev():
                raise PipelineError(f"archive member is a link or device: {info.name!r}")
        tf.extractall(tmp, members=infos, filter="data")


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike,
                    members: list[str] | None = None) -> Path:
    """Extract into `dest` (atomically); `members` limits extraction to those names.

    A corrupt or truncated archive, or one without a requested member, is a PipelineError.
    """
    archive, dest = Path(archive), Path(dest)
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        try:
            if zipfile.is_zipfile(archive):
                _extract_zip(archive, tmp, members)
            elif tarfile.is_tarfile(archive):
                _extract_tar(archive, tmp, members)
            else:
                raise PipelineError(f"not a tar or zip archive (corrupt?): {archive}")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
            raise PipelineError(f"archive {archive} is corrupt or truncated: "
                                f"{type(exc).__name__}: {exc}") from None
    return dest
