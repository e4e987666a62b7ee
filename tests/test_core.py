"""Shared helpers: atomic outputs, checksummed resumable downloads, safe extraction."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from stages.core import archive, download as dl, files
from stages.core.errors import PipelineError
from tests.http_server import serve


# ---------------------------------------------------------------- a local HTTP server
@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    url, httpd, handler = serve(root)
    yield root, url, handler
    httpd.shutdown()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_checksum(server, tmp_path):
    root, url, _ = server
    payload = b"lambada\n" * 1000
    (root / "f.bin").write_bytes(payload)
    dest = tmp_path / "out" / "f.bin"
    dl.download(f"{url}/f.bin", dest, _sha(payload))
    assert dest.read_bytes() == payload


def test_download_checksum_mismatch_leaves_nothing(server, tmp_path):
    root, url, _ = server
    (root / "f.bin").write_bytes(b"tampered")
    dest = tmp_path / "f.bin"
    with pytest.raises(PipelineError, match="checksum mismatch"):
        dl.download(f"{url}/f.bin", dest, _sha(b"original"))
    assert not dest.exists()
    assert not dest.with_name("f.bin.part").exists()


@pytest.mark.parametrize("server_ranges", [True, False])
def test_download_resumes_or_restarts(server, tmp_path, server_ranges):
    root, url, handler = server
    handler.ranges = server_ranges
    payload = bytes(range(256)) * 400
    (root / "f.bin").write_bytes(payload)
    dest = tmp_path / "f.bin"
    # An interrupted earlier run left the first 10,000 bytes.
    dest.with_name("f.bin.part").write_bytes(payload[:10_000])
    dl.download(f"{url}/f.bin", dest, _sha(payload))
    assert dest.read_bytes() == payload


def test_download_unreachable_is_clear(tmp_path):
    with pytest.raises(PipelineError, match="download of .* failed"):
        dl.download("http://127.0.0.1:9/nothing", tmp_path / "x", None, timeout=2)


def test_bad_cached_file_is_moved_aside_and_downloaded_again(server, tmp_path):
    root, url, _ = server
    (root / "f.bin").write_bytes(b"good")
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"corrupted cache")
    assert dl.download(f"{url}/f.bin", dest, _sha(b"good")).read_bytes() == b"good"
    assert dest.with_name("f.bin.bad").read_bytes() == b"corrupted cache"


def test_http_error_is_named_and_not_called_resumable(server, tmp_path):
    _, url, _ = server
    with pytest.raises(PipelineError, match="HTTP 404") as exc:
        dl.download(f"{url}/absent.bin", tmp_path / "absent.bin", None)
    assert "resume" not in str(exc.value)


def test_checksum_mismatch_names_the_final_file(server, tmp_path):
    root, url, _ = server
    (root / "f.bin").write_bytes(b"tampered")
    with pytest.raises(PipelineError) as exc:
        dl.download(f"{url}/f.bin", tmp_path / "f.bin", _sha(b"original"))
    assert str(tmp_path / "f.bin") in str(exc.value) and ".part" not in str(exc.value)


# ---------------------------------------------------------------- atomic outputs
def test_atomic_path_keeps_old_output_on_failure(tmp_path):
    dest = tmp_path / "metrics.json"
    files.write_json(dest, {"acc": 0.5})
    with pytest.raises(RuntimeError):
        with files.atomic_path(dest) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("interrupted")
    assert json.loads(dest.read_text()) == {"acc": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_kill_while_deleting_the_old_folder_keeps_the_new_one_whole(tmp_path, monkeypatch):
    dest = tmp_path / "coco"
    dest.mkdir()
    for i in range(100):
        (dest / f"old{i}.jpg").write_text("old")
    real_rmtree = files.shutil.rmtree

    def killed(path, ignore_errors=False):  # the process dies halfway through the clean-up
        for f in sorted(Path(path).rglob("*.jpg"))[:50]:
            f.unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(files.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_path(dest) as tmp:
            tmp.mkdir()
            for i in range(100):
                (tmp / f"new{i}.jpg").write_text("new")
            (tmp / "eval.json").write_text("{}")
    assert len(list(dest.iterdir())) == 101 and (dest / "eval.json").exists()
    monkeypatch.setattr(files.shutil, "rmtree", real_rmtree)
    with files.atomic_path(dest) as tmp:  # the next run removes what the killed one left
        tmp.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco"]


def test_kill_between_rename_and_swap_never_leaves_a_partial_folder(tmp_path, monkeypatch):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "a.bin").write_text("old")
    real_replace, calls = files.os.replace, []

    def dies_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_path(dest) as tmp:
            tmp.mkdir()
            (tmp / "b.bin").write_text("new")
    assert not dest.exists() or [p.name for p in dest.iterdir()] == ["a.bin"]


def test_atomic_path_replaces_folders(tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "old.bin").write_text("old")
    with files.atomic_path(dest) as tmp:
        tmp.mkdir()
        (tmp / "new.bin").write_text("new")
    assert [p.name for p in dest.iterdir()] == ["new.bin"]


def test_read_json_corrupt_empty_non_utf8_and_missing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PipelineError, match="corrupt"):
        files.read_json(bad)
    bad.write_text("  \n")
    with pytest.raises(PipelineError, match="is empty"):
        files.read_json(bad)
    bad.write_bytes(b'{"a":\n "\xff"}')
    with pytest.raises(PipelineError, match=r"bad.json:2: not UTF-8"):
        files.read_json(bad)
    with pytest.raises(PipelineError, match="not found"):
        files.read_json(tmp_path / "absent.json")


# ---------------------------------------------------------------- archives
def _tar_with(tmp_path, name: str, data: bytes = b"x", kind=tarfile.REGTYPE) -> Path:
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
            tf.addfile(info)
        else:
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_extract_tar_ok(tmp_path):
    out = archive.extract_archive(_tar_with(tmp_path, "model/graph.pb", b"pb"), tmp_path / "x")
    assert (out / "model" / "graph.pb").read_bytes() == b"pb"


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_extract_tar_refuses_traversal(tmp_path, name):
    with pytest.raises(PipelineError, match="escapes"):
        archive.extract_archive(_tar_with(tmp_path, name), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_extract_tar_refuses_links(tmp_path):
    with pytest.raises(PipelineError, match="link"):
        archive.extract_archive(_tar_with(tmp_path, "link", kind=tarfile.SYMTYPE), tmp_path / "x")


def test_extract_zip_refuses_traversal(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(PipelineError, match="escapes"):
        archive.extract_archive(path, tmp_path / "x")


def test_extract_missing_member_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="lacks .*frozen_inference_graph.pb"):
        archive.extract_archive(_tar_with(tmp_path, "model/other.pb"), tmp_path / "x",
                                members=["model/frozen_inference_graph.pb"])


def test_extract_truncated_tar_gz_is_a_clear_error(tmp_path):
    path = _tar_with(tmp_path, "model/graph.pb", bytes(range(256)) * 4000)
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(PipelineError, match="corrupt or truncated"):
        archive.extract_archive(path, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_extract_rejects_corrupt_archive(tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(b"not an archive")
    with pytest.raises(PipelineError, match="not a tar or zip"):
        archive.extract_archive(path, tmp_path / "x")


def test_a_stage_run_in_process_pins_cpu_numerics_into_the_environment():
    from stages.core.numerics import pin_cpu_numerics

    pin_cpu_numerics(1)   # what lm_eval/lm_quantize/lm_rtn/lm_chain main() do first
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_the_pins_do_not_leak_into_the_next_test():
    """tests/conftest.py restores the environment pytest started with, after every test."""
    from tests.conftest import PRISTINE_ENV

    for key in ("OMP_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        assert os.environ.get(key) == PRISTINE_ENV.get(key), key
