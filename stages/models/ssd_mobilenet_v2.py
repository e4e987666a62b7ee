"""SSD MobileNet v2 (COCO) pre- and post-processing shared by every runtime.

Every precision runs exactly this code around its .tflite, so differences between
variants come from the model weights/arithmetic only. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

INPUT_SIZE = 300                     # the graph's fixed_shape_resizer: 300x300
INPUT_SCALE = np.float32(2.0 / 255)  # Preprocessor/mul/x in the frozen graph (0.007843138)
INPUT_OFFSET = np.float32(1.0)       # Preprocessor/sub/y: pixels map to [-1, 1]
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w scales of the faster-rcnn box coder
NUM_CLASSES = 90                     # model classes without background; index i -> COCO id i+1
LABEL_OFFSET = 1                     # TFLite_Detection_PostProcess drops the background column

OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")

# The official 80 COCO categories (id -> name), as in instances_val2017.json. The model's
# 90-id label space leaves 10 ids unused; detections of those ids are dropped.
COCO_CATEGORIES = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign",
    14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep",
    21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 27: "backpack",
    28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis",
    36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove",
    41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza",
    60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed",
    67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote",
    76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink",
    82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush",
}


_COCO_IDS = np.array(sorted(COCO_CATEGORIES))


def class_to_category_id(class_index: int) -> int:
    """Model class index (0-based, background removed) -> official COCO category_id."""
    return int(class_index) + LABEL_OFFSET


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3); grey, CMYK and RGBA images become RGB.

    YCbCr and grey JPEGs go through simplejpeg (libjpeg-turbo straight into numpy: Pillow's
    exact pixels without Pillow's extra copy, 30% faster); everything else through Pillow.
    """
    from PIL import Image
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        import simplejpeg
        data = Path(path).read_bytes()
        try:
            if simplejpeg.decode_jpeg_header(data)[2] in ("YCbCr", "Gray"):
                return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError:  # not a JPEG after all, or truncated: Pillow decodes or explains
            pass
    with Image.open(path) as im:
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


def _lerp_index(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of TF1 ResizeBilinear (align_corners=False, no half pixel)."""
    scale = np.float32(in_size / out_size)
    src = np.arange(out_size, dtype=np.float32) * scale
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    return lo, hi, (src - lo).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _resize_plan(h: int, w: int, size: int) -> tuple[np.ndarray, ...]:
    """Row indices (top rows then bottom rows), column indices and full-size x/y weights."""
    y0, y1, wy = _lerp_index(h, size)
    x0, x1, wx = _lerp_index(w, size)
    full = lambda a, n: np.ascontiguousarray(np.broadcast_to(a, (n, size, 3)))  # noqa: E731
    return np.concatenate([y0, y1]), x0, x1, full(wx[None, :, None], 2 * size), \
        full(wy[:, None, None], size)


def resize_bilinear(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """float32 (size, size, 3), the same arithmetic as the graph's ResizeBilinear op.

    The corner pixels are gathered as uint8 first (cheap: the needed rows, then the needed
    columns), then interpolated in float32 in TF's order: top and bottom rows along x, then
    along y. In-place ufuncs keep it at ~2 ms for a COCO image (it runs once per image).
    """
    h, w = image.shape[:2]
    rows, x0, x1, wx, wy = _resize_plan(h, w, size)
    picked = image.take(rows, axis=0)                    # (2*size, w, 3): top rows, bottom rows
    left = picked.take(x0, axis=1).astype(np.float32)
    right = picked.take(x1, axis=1).astype(np.float32)
    np.subtract(right, left, out=right)
    np.multiply(right, wx, out=right)
    np.add(left, right, out=left)                        # left = lerp along x
    top, bottom = left[:size], left[size:]
    np.subtract(bottom, top, out=bottom)
    np.multiply(bottom, wy, out=bottom)
    np.add(top, bottom, out=top)
    return top


def preprocess(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (1, 300, 300, 3) in [-1, 1], as the graph's Preprocessor."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
    x = resize_bilinear(image)
    np.multiply(x, INPUT_SCALE, out=x)
    np.subtract(x, INPUT_OFFSET, out=x)
    return x[None]


def anchors_to_center_size(corners: np.ndarray) -> np.ndarray:
    """Anchors [ymin, xmin, ymax, xmax] -> [ycenter, xcenter, h, w], the custom op's layout."""
    ymin, xmin, ymax, xmax = corners.T
    return np.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin],
                    axis=1).astype(np.float32)


def to_coco(image_id: int, width: int, height: int, boxes: np.ndarray, classes: np.ndarray,
            scores: np.ndarray, num: int) -> list[dict]:
    """Model outputs (normalized [ymin, xmin, ymax, xmax]) -> COCO results in image pixels.

    bbox is [x, y, w, h]; category_id is the official COCO id; boxes are clipped to
    the image as the graph's ClipToWindow does.
    """
    n = int(num)
    ymin, xmin, ymax, xmax = np.clip(boxes[:n].astype(np.float64), 0.0, 1.0).T
    cats = classes[:n].astype(np.int64) + LABEL_OFFSET
    x, y = xmin * width, ymin * height
    w, h = (xmax - xmin) * width, (ymax - ymin) * height
    keep = np.isin(cats, _COCO_IDS) & (w > 0) & (h > 0)
    # Vectorised (one eval image has 100 boxes); tolist() gives plain Python numbers for JSON.
    bbox = np.round(np.stack([x, y, w, h], axis=1)[keep], 2).tolist()
    score = np.round(scores[:n].astype(np.float64)[keep], 5).tolist()
    return [{"image_id": int(image_id), "category_id": c, "bbox": b, "score": s}
            for c, b, s in zip(cats[keep].tolist(), bbox, score)]

