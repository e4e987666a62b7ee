"""Detector pre/post-processing: pixel range, bit-exact resize, box order and units, category
ids, the image loop's ordering (stages/models/ssd_mobilenet_v2.py, stages/runtimes/)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from stages.models import ssd_mobilenet_v2 as ssd
from stages.runtimes import detect_images


def test_preprocess_maps_pixels_to_minus_one_one_not_black():
    for value, expected in [(0, -1.0), (255, 1.0), (128, 128 * 2 / 255 - 1)]:
        x = ssd.preprocess(np.full((480, 640, 3), value, np.uint8))
        assert x.shape == (1, 300, 300, 3) and x.dtype == np.float32
        np.testing.assert_allclose(x, expected, atol=1e-6)
    ramp = np.tile(np.arange(256, dtype=np.uint8), (50, 1))[..., None].repeat(3, axis=2)
    x = ssd.preprocess(ramp)
    assert x.min() == pytest.approx(-1.0) and x.max() > 0.95  # full range, never all black
    assert np.unique(x).size > 200


def test_preprocess_rejects_non_uint8_rgb():
    for bad in (np.zeros((10, 10, 3), np.float32), np.zeros((10, 10), np.uint8),
                np.zeros((10, 10, 4), np.uint8)):
        with pytest.raises(ValueError, match="expected uint8"):
            ssd.preprocess(bad)


def test_resize_matches_tf1_bilinear_without_half_pixel_centers():
    img = np.array([[[0] * 3, [100] * 3]], np.uint8).repeat(2, axis=0)  # 2x2, columns 0 | 100
    out = ssd.resize_bilinear(img, size=4)
    # TF1 ResizeBilinear(align_corners=False): src = dst * in/out = 0, .5, 1, 1.5 (clamped)
    np.testing.assert_allclose(out[0, :, 0], [0, 50, 100, 100])
    np.testing.assert_allclose(out[:, 0, 0], [0, 0, 0, 0])


def test_load_image_makes_rgb_from_grey(tmp_path):
    Image.fromarray(np.full((10, 12), 77, np.uint8)).save(tmp_path / "g.png")
    im = ssd.load_image(tmp_path / "g.png")
    assert im.shape == (10, 12, 3) and im.dtype == np.uint8 and (im == 77).all()


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_load_image_jpeg_matches_pillow(tmp_path, mode):
    """The fast JPEG path (simplejpeg) decodes to Pillow's exact pixels, grey and CMYK too."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 53, 3), np.uint8)).convert(mode).save(
        tmp_path / "a.jpg", quality=90)
    with Image.open(tmp_path / "a.jpg") as im:
        expected = np.asarray(im.convert("RGB"))
    got = ssd.load_image(tmp_path / "a.jpg")
    assert got.dtype == np.uint8 and got.shape == (37, 53, 3)
    np.testing.assert_array_equal(got, expected)


def test_resize_is_bit_exact_tf1_resize_bilinear():
    """Down- and up-scaling, odd sizes: the NumPy resize gives TF's op's exact float32 values."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    for h, w in [(427, 640), (640, 427), (300, 300), (123, 77), (1, 1), (301, 599)]:
        img = rng.integers(0, 256, (h, w, 3), np.uint8)
        ref = tf.compat.v1.image.resize_bilinear(img[None], (300, 300), align_corners=False,
                                                 half_pixel_centers=False).numpy()[0]
        np.testing.assert_array_equal(ssd.resize_bilinear(img), ref, err_msg=f"{h}x{w}")


def test_to_coco_box_order_units_and_clipping():
    boxes = np.array([[0.1, 0.2, 0.5, 0.6], [-0.1, 0.9, 0.5, 1.2], [0.1, 0.1, 0.2, 0.2]])
    classes = np.array([0.0, 2.0, 16.0])
    scores = np.array([0.9, 0.8, 0.7])
    dets = ssd.to_coco(7, 640, 480, boxes, classes, scores, num=2)
    assert len(dets) == 2  # num_detections limits the list
    assert dets[0] == {"image_id": 7, "category_id": 1, "bbox": [128.0, 48.0, 256.0, 192.0],
                       "score": 0.9}
    # [ymin, xmin, ymax, xmax] clipped to the image: x 0.9..1.0, y 0..0.5
    assert dets[1]["bbox"] == [576.0, 0.0, 64.0, 240.0] and dets[1]["category_id"] == 3
    json.dumps(dets)  # plain Python numbers only (the detections file is JSON)
    assert all(type(v) is float for d in dets for v in d["bbox"])
    # a box clipped to nothing (entirely outside the image) is dropped, not kept with w=0
    assert ssd.to_coco(1, 10, 10, np.array([[1.2, 0.1, 1.5, 0.5]]), np.array([0.0]),
                       np.array([0.9]), 1) == []


def test_category_map_uses_coco_90_ids():
    assert len(ssd.COCO_CATEGORIES) == 80
    assert ssd.class_to_category_id(0) == 1 and ssd.COCO_CATEGORIES[1] == "person"
    assert ssd.COCO_CATEGORIES[ssd.class_to_category_id(16)] == "cat"
    assert ssd.COCO_CATEGORIES[ssd.class_to_category_id(89)] == "toothbrush"
    # class 11 -> id 12, unused by COCO: dropped, never shifted onto a real category
    assert ssd.to_coco(1, 10, 10, np.array([[0, 0, 1, 1.0]]), np.array([11.0]),
                       np.array([0.9]), 1) == []
    # to_coco's ids agree with class_to_category_id for every class that has a category
    for cls in range(ssd.NUM_CLASSES):
        dets = ssd.to_coco(1, 10, 10, np.array([[0, 0, 1, 1.0]]), np.array([float(cls)]),
                           np.array([0.9]), 1)
        cat = ssd.class_to_category_id(cls)
        assert [d["category_id"] for d in dets] == ([cat] if cat in ssd.COCO_CATEGORIES else [])


def test_category_map_matches_official_annotations(coco_mini):
    cats = json.loads((coco_mini / "instances_val2017.json").read_text())["categories"]
    assert {c["id"]: c["name"] for c in cats} == ssd.COCO_CATEGORIES


def test_anchors_to_center_size():
    out = ssd.anchors_to_center_size(np.array([[0.1, 0.2, 0.5, 0.4]]))
    np.testing.assert_allclose(out, [[0.3, 0.3, 0.4, 0.2]], atol=1e-7)
    assert out.dtype == np.float32


class MeanDetector:
    """A fake runtime: one full-image box whose score is the input's mean mapped to [0, 1]."""
    def __init__(self):
        self.inputs = []

    def __call__(self, x):
        self.inputs.append(x)
        return (np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([0.0]),
                np.array([(float(x.mean()) + 1) / 2]), 1)


def test_detect_all_keeps_images_and_paths_in_step(tmp_path):
    """The prefetching loop gives image k the detections of path k, in pixels of image k."""
    values, images, paths = [10, 200, 60, 250, 0, 128, 90], [], []
    for k, v in enumerate(values):
        w, h = 20 + k, 30 + 2 * k
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(np.full((h, w, 3), v, np.uint8)).save(paths[-1])
        images.append({"id": 100 + k, "width": w, "height": h})
    det = MeanDetector()
    results, wall = detect_images.detect_all(det, images, paths)
    assert wall > 0 and len(det.inputs) == len(values)
    assert [d["image_id"] for d in results] == [im["id"] for im in images]
    for d, v, im in zip(results, values, images):
        assert d["score"] == pytest.approx(v / 255, abs=1e-4)
        assert d["bbox"] == [0.0, 0.0, float(im["width"]), float(im["height"])]
    np.testing.assert_array_equal(det.inputs[3], detect_images.prepare(paths[3]))
