"""SSD MobileNet v2 (COCO) pre- and post-processing shared by det_convert and det_eval.

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
PRECISIONS = ("float32", "float16", "int8", "dynamic_int8")  # the variants det_convert builds
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


def class_to_category_id(class_index: int) -> int:
    """Model class index (0-based, background removed) -> official COCO category_id."""
    return int(class_index) + LABEL_OFFSET


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3); grey and RGBA images become RGB."""
    from PIL import Image
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
    """Flat pixel indices of the 4 corners and full-size x/y weights (no slow broadcasting)."""
    y0, y1, wy = _lerp_index(h, size)
    x0, x1, wx = _lerp_index(w, size)
    idx = [(ys[:, None] * w + xs[None, :]).ravel() for ys in (y0, y1) for xs in (x0, x1)]
    full = lambda a: np.ascontiguousarray(np.broadcast_to(a, (size, size, 3)))  # noqa: E731
    return (*idx, full(wx[None, :, None]), full(wy[:, None, None]))


def resize_bilinear(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """float32 (size, size, 3), the same arithmetic as the graph's ResizeBilinear op.

    The four corner pixels are gathered as uint8 first (cheap), then interpolated in
    float32 in TF's order: top/bottom along x, then along y.
    """
    h, w = image.shape[:2]
    i00, i01, i10, i11, wx, wy = _resize_plan(h, w, size)
    flat = image.reshape(h * w, 3)
    tl, tr, bl, br = (flat.take(i, axis=0).reshape(size, size, 3).astype(np.float32)
                      for i in (i00, i01, i10, i11))
    top = tl + (tr - tl) * wx
    bottom = bl + (br - bl) * wx
    return top + (bottom - top) * wy


def preprocess(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (1, 300, 300, 3) in [-1, 1], as the graph's Preprocessor."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
    x = resize_bilinear(image) * INPUT_SCALE - INPUT_OFFSET
    return x[None].astype(np.float32, copy=False)


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
    b = np.clip(boxes[:n].astype(np.float64), 0.0, 1.0)
    out = []
    for (ymin, xmin, ymax, xmax), cls, score in zip(b, classes[:n], scores[:n]):
        cat = class_to_category_id(cls)
        w, h = (xmax - xmin) * width, (ymax - ymin) * height
        if cat not in COCO_CATEGORIES or w <= 0 or h <= 0:
            continue
        out.append({"image_id": int(image_id), "category_id": cat,
                    "bbox": [round(xmin * width, 2), round(ymin * height, 2),
                             round(w, 2), round(h, 2)],
                    "score": round(float(score), 5)})
    return out


class Detector:
    """A .tflite detector on the LiteRT interpreter: float32 image in, four outputs by name."""

    def __init__(self, model_path: str | Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter
        self.interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        self.interpreter.allocate_tensors()
        runner = self.interpreter.get_signature_runner()
        outs = runner.get_output_details()
        missing = [n for n in OUTPUT_NAMES if n not in outs]
        if missing:
            raise ValueError(f"{model_path}: outputs {missing} missing (have {sorted(outs)})")
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = [outs[n]["index"] for n in OUTPUT_NAMES]

    def set_input(self, x: np.ndarray) -> None:
        self.interpreter.set_tensor(self.input_index, x)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def outputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        boxes, classes, scores, num = (self.interpreter.get_tensor(i) for i in self.output_index)
        return boxes[0], classes[0], scores[0], int(num.reshape(-1)[0])

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        self.set_input(x)
        self.invoke()
        return self.outputs()
