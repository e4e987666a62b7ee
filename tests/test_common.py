"""Shared helpers: atomic outputs, checksummed resumable downloads, safe extraction."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from stages import common
from stages.common import PipelineError
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
    common.download(f"{url}/f.bin", dest, _sha(payload))
    assert dest.read_bytes() == payload


def test_download_checksum_mismatch_leaves_nothing(server, tmp_path):
    root, url, _ = server
    (root / "f.bin").write_bytes(b"tampered")
    dest = tmp_path / "f.bin"
    with pytest.raises(PipelineError, match="checksum mismatch"):
        common.download(f"{url}/f.bin", dest, _sha(b"original"))
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
    common.download(f"{url}/f.bin", dest, _sha(payload))
    assert dest.read_bytes() == payload


def test_download_unreachable_is_clear(tmp_path):
    with pytest.raises(PipelineError, match="download of .* failed"):
        common.download("http://127.0.0.1:9/nothing", tmp_path / "x", None, timeout=2)


def test_existing_file_is_rechecked(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    with pytest.raises(PipelineError, match="checksum mismatch"):
        common.download("http://127.0.0.1:9/unused", f, _sha(b"xyz"))


# ---------------------------------------------------------------- atomic outputs
def test_atomic_path_keeps_old_output_on_failure(tmp_path):
    dest = tmp_path / "metrics.json"
    common.write_json(dest, {"acc": 0.5})
    with pytest.raises(RuntimeError):
        with common.atomic_path(dest) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("interrupted")
    assert json.loads(dest.read_text()) == {"acc": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_atomic_path_replaces_folders(tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "old.bin").write_text("old")
    with common.atomic_path(dest) as tmp:
        tmp.mkdir()
        (tmp / "new.bin").write_text("new")
    assert [p.name for p in dest.iterdir()] == ["new.bin"]


def test_read_json_corrupt_and_missing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PipelineError, match="corrupt"):
        common.read_json(bad)
    with pytest.raises(PipelineError, match="not found"):
        common.read_json(tmp_path / "absent.json")


# ---------------------------------------------------------------- params
def test_params_helpers(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("quant:\n  bits: 4\n")
    params = common.load_params(p)
    assert common.as_list(common.get_param(params, "quant.bits")) == [4]
    assert common.as_list([8, 4]) == [8, 4]
    with pytest.raises(PipelineError, match="missing param 'quant.k'"):
        common.get_param(params, "quant.k")
    with pytest.raises(PipelineError, match=">= 1"):
        common.require_int("eval_lm.k", 0, minimum=1)
    with pytest.raises(PipelineError, match="unknown precision"):
        common.require_choice("precision", "int3", {"float32", "int8"})


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
    out = common.extract_archive(_tar_with(tmp_path, "model/graph.pb", b"pb"), tmp_path / "x")
    assert (out / "model" / "graph.pb").read_bytes() == b"pb"


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_extract_tar_refuses_traversal(tmp_path, name):
    with pytest.raises(PipelineError, match="escapes"):
        common.extract_archive(_tar_with(tmp_path, name), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_extract_tar_refuses_links(tmp_path):
    with pytest.raises(PipelineError, match="link"):
        common.extract_archive(_tar_with(tmp_path, "link", kind=tarfile.SYMTYPE), tmp_path / "x")


def test_extract_zip_refuses_traversal(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(PipelineError, match="escapes"):
        common.extract_archive(path, tmp_path / "x")


def test_extract_rejects_corrupt_archive(tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(b"not an archive")
    with pytest.raises(PipelineError, match="not a tar or zip"):
        common.extract_archive(path, tmp_path / "x")


@pytest.mark.parametrize("value, open_ends, ok", [(0, False, True), (1, False, True), (0.5, True, True),
                                                  (0, True, False), (1, True, False), (1.01, False, False),
                                                  (True, False, False), ("0.5", False, False)])
def test_require_number(value, open_ends, ok):
    if ok:
        assert common.require_number("x.y", value, 0, 1, open_ends) == float(value)
    else:
        with pytest.raises(PipelineError, match="x.y must be a number in"):
            common.require_number("x.y", value, 0, 1, open_ends)
