"""coco_data: deterministic selection, calib/eval disjointness, clear errors, atomic outputs."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import zipfile

import pytest

from stages import coco_data, coco_official
from stages.common import PipelineError
from tests.det_fixtures import make_coco, make_jpeg, write_params
from tests.http_server import serve


def run(tmp_path, out, **overrides):
    coco_data.main(["--out", str(out), "--params", str(write_params(tmp_path / "p.yaml", **overrides))])
    return (json.loads((out / "eval.json").read_text()), json.loads((out / "calib.json").read_text()))


def names(paths):
    return {p.rsplit("/", 1)[-1] for p in paths}


def test_select_ids_sorted_first_n():
    assert coco_data.select_ids([5, 3, 9, 1], 2) == [1, 3]
    assert coco_data.select_ids([5, 3, 9, 1], 0) == [1, 3, 5, 9]


def test_local_selection_disjoint_and_deterministic(tmp_path):
    cfg = make_coco(tmp_path / "c")
    gt, calib = run(tmp_path, tmp_path / "o1", **cfg, **{"coco.num_images": 3, "detector.calib_size": 2})
    assert [im["id"] for im in gt["images"]] == [10, 20, 30] and gt["has_ground_truth"]
    assert {a["image_id"] for a in gt["annotations"]} == {10, 20, 30}
    assert len(calib["images"]) == 2
    assert not names(calib["images"]) & {im["file_name"] for im in gt["images"]}
    assert run(tmp_path, tmp_path / "o2", **cfg, **{"coco.num_images": 3,
                                                    "detector.calib_size": 2}) == (gt, calib)


def test_shared_mini_and_calib_are_disjoint(tmp_path, coco_mini, coco_calib):
    gt, calib = run(tmp_path, tmp_path / "o", **{
        "coco.source": "local", "coco.num_images": 0, "detector.calib_size": 100,
        "coco.local.images": str(coco_mini / "images"),
        "coco.local.annotations": str(coco_mini / "instances_val2017.json"),
        "coco.local.calib_images": str(coco_calib)})
    assert len(gt["images"]) == 206 and len(calib["images"]) == 100
    assert not names(calib["images"]) & {im["file_name"] for im in gt["images"]}


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="scikit-image absent")
def test_offline_has_no_ground_truth_and_disjoint_calib(tmp_path):
    gt, calib = run(tmp_path, tmp_path / "o", **{"coco.source": "offline", "detector.calib_size": 12})
    assert gt["has_ground_truth"] is False and gt["annotations"] == []
    assert len(gt["images"]) == len(coco_data.OFFLINE_EVAL) and len(calib["images"]) == 12
    assert not set(coco_data.OFFLINE_EVAL) & set(coco_data.OFFLINE_CALIB)
    assert all(p.startswith(str(tmp_path / "o" / "calib")) for p in calib["images"])


@pytest.mark.parametrize("breakage, message", [
    ("missing_folder", "folder not found"), ("corrupt_json", "is corrupt"),
    ("unreadable_image", "unreadable image"), ("calib_too_large", "calib_size=99")])
def test_bad_inputs_fail_clearly_and_keep_outputs(tmp_path, breakage, message):
    cfg = make_coco(tmp_path / "c")
    out = tmp_path / "out"
    out.mkdir()
    (out / "eval.json").write_text("previous")
    size = 2
    if breakage == "missing_folder":
        cfg["coco.local.images"] = str(tmp_path / "nope")
    elif breakage == "corrupt_json":
        (tmp_path / "c" / "instances.json").write_text("{not json")
    elif breakage == "unreadable_image":
        (tmp_path / "c" / "images" / "000000000020.jpg").write_bytes(b"not a jpeg")
    else:
        size = 99
    with pytest.raises(PipelineError, match=message):
        run(tmp_path, out, **cfg, **{"detector.calib_size": size})
    assert (out / "eval.json").read_text() == "previous"


def official_server(tmp_path, monkeypatch):
    """A fake images.cocodataset.org with 3 val2017 and 4 train2017 images."""
    site = tmp_path / "site"
    val = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 64, "height": 48} for i in (3, 1, 2)]
    train = [{"id": i, "file_name": f"{i:012d}.jpg"} for i in (101, 102, 103, 104)]
    for im in val:
        make_jpeg(site / "val2017" / im["file_name"], im["id"])
    for im in train:
        make_jpeg(site / "train2017" / im["file_name"], im["id"])
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}]
    zpath = site / "annotations" / "annotations_trainval2017.zip"
    zpath.parent.mkdir(parents=True)
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("annotations/instances_val2017.json", json.dumps(
            {"images": val, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
        zf.writestr("annotations/captions_train2017.json", json.dumps(
            {"images": train, "annotations": [], "categories": []}))
    url, server, handler = serve(site)
    monkeypatch.setattr(coco_official, "COCO_URL", url)
    monkeypatch.setattr(coco_official, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(coco_official, "ANNOTATIONS_SHA256", hashlib.sha256(zpath.read_bytes()).hexdigest())
    return zpath, server, handler


def test_official_download_resume_and_disjoint(tmp_path, monkeypatch):
    zpath, server, handler = official_server(tmp_path, monkeypatch)
    part = tmp_path / "cache" / "annotations_trainval2017.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(zpath.read_bytes()[:100])  # an interrupted earlier download
    try:
        gt, calib = run(tmp_path, tmp_path / "o", **{"coco.source": "official", "coco.num_images": 2,
                                                      "detector.calib_size": 3})
    finally:
        server.shutdown()
    assert ("/annotations/annotations_trainval2017.zip", "bytes=100-") in handler.requests
    assert [im["id"] for im in gt["images"]] == [1, 2] and len(gt["annotations"]) == 1
    assert len(calib["images"]) == 3 and all("/train2017/" in p for p in calib["images"])
    assert all((tmp_path / "o").joinpath(*p.split("/")[-2:]).is_file() for p in calib["images"])


def test_official_checksum_mismatch_keeps_outputs(tmp_path, monkeypatch):
    _, server, _ = official_server(tmp_path, monkeypatch)
    monkeypatch.setattr(coco_official, "ANNOTATIONS_SHA256", "0" * 64)
    out = tmp_path / "o"
    out.mkdir()
    (out / "eval.json").write_text("previous")
    try:
        with pytest.raises(PipelineError, match="checksum mismatch"):
            run(tmp_path, out, **{"coco.source": "official", "detector.calib_size": 1})
    finally:
        server.shutdown()
    assert (out / "eval.json").read_text() == "previous"
    assert not (tmp_path / "cache" / "annotations_trainval2017.zip").exists()
