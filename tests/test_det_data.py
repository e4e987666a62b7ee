"""coco_data: deterministic selection, calib/eval disjointness on content, manifests that do
not depend on where the clone or the venv lives, clear errors, atomic outputs."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stages.core.errors import PipelineError
from stages.core.files import sha256_file
from stages.datasets import coco, coco_offline, coco_official
from stages.entry import coco_data
from tests.det_fixtures import ROOT, make_coco, make_jpeg, strings, write_params
from tests.http_server import serve

needs_skimage = pytest.mark.skipif(importlib.util.find_spec("skimage") is None,
                                   reason="scikit-image absent")
EVAL_IMAGE_KEYS = {"id", "file_name", "width", "height", "sha256"}


def run(tmp_path, out, **overrides):
    params = write_params(tmp_path / "p.yaml", **overrides)
    coco_data.main(["--out", str(out), "--params", str(params)])
    return tuple(json.loads((out / name).read_text()) for name in ("eval.json", "calib.json"))


def file_names(manifest):
    return {im["file_name"] for im in manifest["images"]}


def hashes(manifest):
    return {im["sha256"] for im in manifest["images"]}


def assert_manifest_matches_files(manifest, where="manifest"):
    """Every listed file exists under image_root with the recorded sha256 (image_paths checks)."""
    paths = coco.image_paths(manifest, where)
    assert [sha256_file(p) for p in paths] == [im["sha256"] for im in manifest["images"]]
    return paths


def test_select_ids_sorted_first_n():
    assert coco.select_ids([5, 3, 9, 1], 2) == [1, 3]
    assert coco.select_ids([5, 3, 9, 1], 0) == [1, 3, 5, 9]
    assert coco.select_ids([5, 5, 3], 0) == [3, 5]


def test_pick_calib_is_seeded_sorted_and_skips_evaluated_names():
    names = [f"{i:03d}.jpg" for i in range(50)]
    exclude = set(names[:10])
    a = coco.pick_calib(names, exclude, 8, seed=0)
    assert a == sorted(a) and len(set(a)) == 8 and not set(a) & exclude
    assert coco.pick_calib(list(reversed(names)), exclude, 8, seed=0) == a  # input order irrelevant
    assert any(coco.pick_calib(names, exclude, 8, seed=s) != a for s in range(1, 4))
    assert sorted(coco.pick_calib(names, exclude, 40, seed=3)) == sorted(set(names) - exclude)
    with pytest.raises(PipelineError, match="calib_size=41 but only 40"):
        coco.pick_calib(names, exclude, 41, seed=0)


def test_local_manifests_format_disjoint_and_deterministic(tmp_path):
    cfg = make_coco(tmp_path / "c")
    knobs = {"coco.num_images": 3, "detector.calib_size": 2}
    gt, calib = run(tmp_path, tmp_path / "o1", **cfg, **knobs)
    assert [im["id"] for im in gt["images"]] == [10, 20, 30] and gt["has_ground_truth"]
    assert gt["source"] == "local" and gt["image_root"] == cfg["coco.local.images"]
    assert all(set(im) == EVAL_IMAGE_KEYS for im in gt["images"])  # no absolute "path"
    assert {a["image_id"] for a in gt["annotations"]} == {10, 20, 30}
    assert [c["id"] for c in gt["categories"]] == [1]
    assert set(calib) == {"source", "seed", "image_root", "images"}
    assert calib["image_root"] == cfg["coco.local.calib_images"] and calib["seed"] == 0
    assert len(calib["images"]) == 2
    assert all(set(im) == {"file_name", "sha256"} for im in calib["images"])
    assert not file_names(calib) & file_names(gt) and not hashes(calib) & hashes(gt)
    assert_manifest_matches_files(gt)
    assert_manifest_matches_files(calib)
    run(tmp_path, tmp_path / "o2", **cfg, **knobs)
    for name in ("eval.json", "calib.json"):  # byte-identical on a rerun
        assert (tmp_path / "o1" / name).read_bytes() == (tmp_path / "o2" / name).read_bytes()
    # the seed draws the calibration images: some other seed picks other ones
    draws = {tuple(sorted(file_names(run(tmp_path, tmp_path / f"s{s}", **cfg, **knobs, seed=s)[1])))
             for s in range(4)}
    assert len(draws) > 1


def test_same_bytes_under_another_name_is_not_calibration(tmp_path):
    """An evaluated image copied into the calibration folder under another name: caught on
    content (sha256), so coco_data fails and keeps its previous outputs."""
    cfg = make_coco(tmp_path / "c", n_calib=4)
    shutil.copyfile(tmp_path / "c" / "images" / "000000000020.jpg",
                    tmp_path / "c" / "calib" / "000000000999.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "eval.json").write_text("previous")
    with pytest.raises(PipelineError, match=r"also evaluated \(same bytes\).*000000000999.jpg"):
        run(tmp_path, out, **cfg, **{"coco.num_images": 0, "detector.calib_size": 5})
    assert (out / "eval.json").read_text() == "previous"
    assert sorted(p.name for p in out.iterdir()) == ["eval.json"]


def test_check_disjoint_compares_content_not_names():
    evals = {"images": [{"file_name": "a.jpg", "sha256": "1" * 64}]}
    coco.check_disjoint(evals, {"images": [{"file_name": "a.jpg", "sha256": "2" * 64}]})
    with pytest.raises(PipelineError, match="same bytes"):
        coco.check_disjoint(evals, {"images": [{"file_name": "b.jpg", "sha256": "1" * 64}]})


def test_shared_mini_and_calib_are_disjoint_on_content(tmp_path, coco_mini, coco_calib):
    """The shared val2017 sample and the shared calibration folder never hold the same bytes,
    neither in the manifests coco_data writes nor in the folders as a whole."""
    gt, calib = run(tmp_path, tmp_path / "o", **{
        "coco.source": "local", "coco.num_images": 0, "detector.calib_size": 100,
        "coco.local.images": str(coco_mini / "images"),
        "coco.local.annotations": str(coco_mini / "instances_val2017.json"),
        "coco.local.calib_images": str(coco_calib)})
    assert len(gt["images"]) == 206 and len(calib["images"]) == 100
    assert len(hashes(gt)) == 206 and len(hashes(calib)) == 100
    assert not hashes(calib) & hashes(gt) and not file_names(calib) & file_names(gt)
    assert_manifest_matches_files(calib)
    every = lambda folder: {sha256_file(p) for p in folder.iterdir() if p.is_file()}  # noqa: E731
    assert not every(coco_mini / "images") & every(coco_calib)


@needs_skimage
def test_offline_has_no_ground_truth_and_disjoint_calib(tmp_path):
    out = tmp_path / "o"
    gt, calib = run(tmp_path, out, **{"coco.source": "offline", "detector.calib_size": 12})
    assert gt["has_ground_truth"] is False and gt["annotations"] == []
    assert gt["image_root"] == "pkg:skimage/data"
    assert [im["file_name"] for im in gt["images"]] == list(coco_offline.EVAL)
    assert len(calib["images"]) == 12
    assert not set(coco_offline.EVAL) & set(coco_offline.CALIB)
    data = coco.package_root(coco_offline.ROOT)
    assert not {sha256_file(data / n) for n in coco_offline.EVAL} & \
        {sha256_file(data / n) for n in coco_offline.CALIB}
    assert_manifest_matches_files(gt)
    paths = assert_manifest_matches_files(calib)
    assert all(p.resolve().parent == (out / "calib").resolve() for p in paths)
    assert len(hashes(calib)) == 12 and not hashes(calib) & hashes(gt)  # 12 different crops


def clone(where: Path) -> Path:
    """A copy of the project's code (not the venv) at another location."""
    where.mkdir(parents=True)
    shutil.copytree(ROOT / "stages", where / "stages",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return where


def coco_data_in(repo: Path, **overrides) -> tuple[bytes, bytes]:
    """Run `python -m stages.entry.coco_data --out data/coco` from `repo` with its own code."""
    write_params(repo / "params.yaml", **overrides)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import sys, stages; assert stages.__file__.startswith(sys.argv[1]), stages.__file__\n"
            "from stages.entry.coco_data import main; main(['--out', 'data/coco'])")
    subprocess.run([sys.executable, "-c", code, str(repo)], cwd=repo, env=env, check=True,
                   capture_output=True)
    out = repo / "data" / "coco"
    for name in ("eval.json", "calib.json"):  # the manifests resolve from the clone's root
        manifest = json.loads((out / name).read_text())
        if not manifest["image_root"].startswith("pkg:"):
            manifest["image_root"] = str(repo / manifest["image_root"])
        assert_manifest_matches_files(manifest, name)
    return (out / "eval.json").read_bytes(), (out / "calib.json").read_bytes()


def assert_no_absolute_path(data: bytes, *locations: Path):
    text = data.decode()
    for bad in ("/tmp", "site-packages", sys.prefix, *map(str, locations)):
        assert bad not in text, bad
    assert not any(s.startswith(("/", "\\")) or s[1:3] == ":\\" for s in strings(json.loads(text)))


@pytest.mark.parametrize("source", [pytest.param("offline", marks=needs_skimage), "local"])
def test_manifests_do_not_depend_on_the_clone_location(tmp_path, source):
    """The same params in two clones at different places (and a COCO folder next to each,
    given by a relative path) give byte-identical eval.json and calib.json, free of
    absolute paths, so DVC sees the same data in every clone."""
    repos = [clone(tmp_path / "a" / "repo"), clone(tmp_path / "b" / "deeper" / "repo")]
    knobs = {"coco.source": source, "detector.calib_size": 3}
    if source == "local":
        knobs.update(make_coco(tmp_path / "a" / "coco", prefix=Path("../coco")))
        shutil.copytree(tmp_path / "a" / "coco", tmp_path / "b" / "deeper" / "coco")
    (eval_a, calib_a), (eval_b, calib_b) = (coco_data_in(r, **knobs) for r in repos)
    assert eval_a == eval_b and calib_a == calib_b
    for data in (eval_a, calib_a):
        assert_no_absolute_path(data, tmp_path, *repos)


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


def test_manifest_readers_catch_stale_or_changed_files(tmp_path):
    cfg = make_coco(tmp_path / "c")
    gt, _ = run(tmp_path, tmp_path / "o", **cfg, **{"detector.calib_size": 2})
    no_root = tmp_path / "old.json"
    no_root.write_text(json.dumps({"images": [{"path": "/abs/a.jpg"}]}))  # the old format
    with pytest.raises(PipelineError, match="lists no images"):
        coco.read_manifest(no_root, "evaluation manifest")
    make_jpeg(tmp_path / "c" / "images" / "000000000010.jpg", 1234)  # changed since listed
    with pytest.raises(PipelineError, match="checksum mismatch.*000000000010.jpg"):
        coco.image_paths(gt, "eval.json")
    (tmp_path / "c" / "images" / "000000000010.jpg").unlink()
    with pytest.raises(PipelineError, match="not found.*000000000010.jpg"):
        coco.image_paths(gt, "eval.json")


def test_official_sources_use_https():
    from stages.models import ssd_graph
    assert coco_official.COCO_URL.startswith("https://")
    assert ssd_graph.TARBALL_URL.startswith("https://")


def official_server(tmp_path, monkeypatch):
    """A fake images.cocodataset.org with 3 val2017 and 4 train2017 images; the annotation
    zip holds files shaped like the official ones (captions have no `categories`)."""
    site = tmp_path / "site"
    val = [{"license": 1, "file_name": f"{i:012d}.jpg", "coco_url": "", "height": 48, "width": 64,
            "date_captured": "", "flickr_url": "", "id": i} for i in (3, 1, 2)]
    train = [{"license": 1, "file_name": f"{i:012d}.jpg", "coco_url": "", "height": 48,
              "width": 64, "date_captured": "", "flickr_url": "", "id": i}
             for i in (101, 102, 103, 104)]
    for im in val:
        make_jpeg(site / "val2017" / im["file_name"], im["id"])
    for im in train:
        make_jpeg(site / "train2017" / im["file_name"], im["id"])
    info = {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017}
    licenses = [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1,
                 "name": "Attribution-NonCommercial-ShareAlike License"}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25,
             "iscrowd": 0, "segmentation": [[0, 0, 5, 0, 5, 5]]}]
    captions = {"info": info, "images": train, "licenses": licenses,
                "annotations": [{"image_id": 101, "id": 1, "caption": "A cat."}]}
    assert set(captions) == {"info", "images", "annotations", "licenses"}  # as published
    zpath = site / "annotations" / "annotations_trainval2017.zip"
    zpath.parent.mkdir(parents=True)
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("annotations/instances_val2017.json", json.dumps(
            {"info": info, "licenses": licenses, "images": val, "annotations": anns,
             "categories": [{"supercategory": "person", "id": 1, "name": "person"}]}))
        zf.writestr("annotations/captions_train2017.json", json.dumps(captions))
    url, server, handler = serve(site)
    monkeypatch.setattr(coco_official, "COCO_URL", url)
    monkeypatch.setattr(coco_official, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(coco_official, "ANNOTATIONS_SHA256",
                        hashlib.sha256(zpath.read_bytes()).hexdigest())
    return zpath, server, handler


def test_official_download_resume_and_disjoint(tmp_path, monkeypatch):
    zpath, server, handler = official_server(tmp_path, monkeypatch)
    part = tmp_path / "cache" / "annotations_trainval2017.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(zpath.read_bytes()[:100])  # an interrupted earlier download
    out = tmp_path / "o"
    try:
        gt, calib = run(tmp_path, out, **{"coco.source": "official", "coco.num_images": 2,
                                          "detector.calib_size": 3})
    finally:
        server.shutdown()
    assert ("/annotations/annotations_trainval2017.zip", "bytes=100-") in handler.requests
    assert [im["id"] for im in gt["images"]] == [1, 2] and len(gt["annotations"]) == 1
    assert all(set(im) == EVAL_IMAGE_KEYS for im in gt["images"])
    assert len(calib["images"]) == 3
    assert file_names(calib) <= {f"{i:012d}.jpg" for i in range(101, 105)}
    assert not hashes(calib) & hashes(gt)
    for manifest, split in ((gt, "val2017"), (calib, "train2017")):
        assert not Path(manifest["image_root"]).is_absolute()
        paths = assert_manifest_matches_files(manifest)
        assert all(p.resolve().parent == (out / split).resolve() for p in paths)
    fetched = {p for p, _ in handler.requests}
    assert "/val2017/000000000003.jpg" not in fetched  # only the selected images are downloaded


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


def test_official_image_unlike_its_listing_is_one_line_and_leaves_the_cache_clean(tmp_path, monkeypatch):
    """COCO publishes no per-image checksums: a downloaded image must decode to the size the
    checksummed annotations list for it, else it is refused and its cached copy removed."""
    _, server, _ = official_server(tmp_path, monkeypatch)
    bad = tmp_path / "site" / "val2017" / "000000000001.jpg"
    from PIL import Image
    Image.new("RGB", (32, 32), (10, 20, 30)).save(bad)          # substituted: not 64x48
    out = tmp_path / "o"
    try:
        with pytest.raises(PipelineError, match=r"000000000001.jpg is 32x32, the COCO annotations list it as 64x48"):
            run(tmp_path, out, **{"coco.source": "official", "coco.num_images": 2, "detector.calib_size": 1})
    finally:
        server.shutdown()
    assert not (tmp_path / "cache" / "val2017" / "000000000001.jpg").exists()
    assert not out.exists()
