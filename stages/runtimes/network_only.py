"""What the runtimes that run only the network share: the model folder det_convert_rt writes
(the runtime's model file, anchors.npy, postprocess.json) and the one NumPy post-processing
of stages/models/ssd_nms.py, configured by postprocess.json as det_convert configures
LiteRT's TFLite_Detection_PostProcess."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError
from stages.models import ssd_nms
from stages.schema.variants import missing_package

POSTPROCESS = "postprocess.json"  # {"score_threshold", "iou_threshold", "max_detections"}
ANCHORS = "anchors.npy"


def require(module: str):
    """Import a runtime's package, or one line naming the pip package and setup.sh."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PipelineError(missing_package(module)) from None


def model_file(folder: str | Path, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise PipelineError(f"{path} not found: {folder} is not a converted detector folder "
                            "(run det_convert_rt)")
    return path


class NetworkOnly:
    """A detector whose runtime runs the network; post-processing in NumPy (ssd_nms)."""

    def __init__(self, folder: str | Path):
        try:
            self._cfg = json.loads(model_file(folder, POSTPROCESS).read_text())
            self._anchors = np.load(model_file(folder, ANCHORS))
            cfg = {k: self._cfg[k] for k in ("score_threshold", "iou_threshold", "max_detections")}
        except (ValueError, KeyError, OSError) as exc:
            raise PipelineError(f"{folder}: corrupt detector folder ({exc}); rerun det_convert_rt") \
                from None
        if self._anchors.ndim != 2 or self._anchors.shape[1] != 4:
            raise PipelineError(f"{folder}/{ANCHORS}: expected (N, 4) anchors")
        self._nms = cfg

    def network(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def postprocess(self, box_encodings: np.ndarray, class_scores: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        return ssd_nms.postprocess(box_encodings, class_scores, self._anchors, **self._nms)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        return self.postprocess(**self.network(x))
