"""Detector pre/post-processing: pixel range, box order and units, category ids (no TF)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from stages import detector


def test_preprocess_maps_pixels_to_minus_one_one_not_black():
    for value, expected in [(0, -1.0), (255, 1.0), (128, 128 * 2 / 255 - 1)]:
        x = detector.preprocess(np.full((480, 640, 3), value, np.uint8))
        assert x.shape == (1, 300, 300, 3) and x.dtype == np.float32
        np.testing.assert_allclose(x, expected, atol=1e-6)
    ramp = np.tile(np.arange(256, dtype=np.uint8), (50, 1))[..., None].repeat(3, axis=2)
    x = detector.preprocess(ramp)
    assert x.min() == pytest.approx(-1.0) and x.max() > 0.95  # full range, never all black
    assert np.unique(x).size > 200


def test_resize_matches_tf1_bilinear_without_half_pixel_centers():
    img = np.array([[[0] * 3, [100] * 3]], np.uint8).repeat(2, axis=0)  # 2x2, columns 0 | 100
    out = detector.resize_bilinear(img, size=4)
    # TF1 ResizeBilinear(align_corners=False): src = dst * in/out = 0, .5, 1, 1.5 (clamped)
    np.testing.assert_allclose(out[0, :, 0], [0, 50, 100, 100])
    np.testing.assert_allclose(out[:, 0, 0], [0, 0, 0, 0])


def test_load_image_makes_rgb_from_grey(tmp_path):
    Image.fromarray(np.full((10, 12), 77, np.uint8)).save(tmp_path / "g.png")
    im = detector.load_image(tmp_path / "g.png")
    assert im.shape == (10, 12, 3) and im.dtype == np.uint8 and (im == 77).all()


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_load_image_jpeg_matches_pillow(tmp_path, mode):
    """The fast JPEG path (simplejpeg) decodes to Pillow's exact pixels, grey and CMYK too."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 53, 3), np.uint8)).convert(mode).save(
        tmp_path / "a.jpg", quality=90)
    with Image.open(tmp_path / "a.jpg") as im:
        expected = np.asarray(im.convert("RGB"))
    got = detector.load_image(tmp_path / "a.jpg")
    assert got.dtype == np.uint8 and got.shape == (37, 53, 3)
    np.testing.assert_array_equal(got, expected)


def test_resize_is_tf1_resize_bilinear_on_a_real_sized_image():
    tf = pytest.importorskip("tensorflow")
    img = np.random.default_rng(1).integers(0, 256, (427, 640, 3), np.uint8)
    ref = tf.compat.v1.image.resize_bilinear(img[None], (300, 300), align_corners=False,
                                             half_pixel_centers=False).numpy()[0]
    np.testing.assert_allclose(detector.resize_bilinear(img), ref, atol=1e-4)


def test_to_coco_box_order_units_and_clipping():
    boxes = np.array([[0.1, 0.2, 0.5, 0.6], [-0.1, 0.9, 0.5, 1.2], [0.1, 0.1, 0.2, 0.2]])
    classes = np.array([0.0, 2.0, 16.0])
    scores = np.array([0.9, 0.8, 0.7])
    dets = detector.to_coco(7, 640, 480, boxes, classes, scores, num=2)
    assert len(dets) == 2  # num_detections limits the list
    assert dets[0] == {"image_id": 7, "category_id": 1, "bbox": [128.0, 48.0, 256.0, 192.0],
                       "score": 0.9}
    # [ymin, xmin, ymax, xmax] clipped to the image: x 0.9..1.0, y 0..0.5
    assert dets[1]["bbox"] == [576.0, 0.0, 64.0, 240.0] and dets[1]["category_id"] == 3


def test_category_map_uses_coco_90_ids():
    assert len(detector.COCO_CATEGORIES) == 80
    assert detector.class_to_category_id(0) == 1 and detector.COCO_CATEGORIES[1] == "person"
    assert detector.COCO_CATEGORIES[detector.class_to_category_id(16)] == "cat"
    assert detector.COCO_CATEGORIES[detector.class_to_category_id(89)] == "toothbrush"
    # class 11 -> id 12, unused by COCO: dropped, never shifted onto a real category
    assert detector.to_coco(1, 10, 10, np.array([[0, 0, 1, 1.0]]), np.array([11.0]),
                            np.array([0.9]), 1) == []


def test_category_map_matches_official_annotations(coco_mini):
    cats = json.loads((coco_mini / "instances_val2017.json").read_text())["categories"]
    assert {c["id"]: c["name"] for c in cats} == detector.COCO_CATEGORIES


def test_anchors_to_center_size():
    out = detector.anchors_to_center_size(np.array([[0.1, 0.2, 0.5, 0.4]]))
    np.testing.assert_allclose(out, [[0.3, 0.3, 0.4, 0.2]], atol=1e-7)
