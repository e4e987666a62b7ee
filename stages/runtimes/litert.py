"""LiteRT (ai_edge_litert) runtime of the detector: a .tflite with two signatures."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError
from stages.models.ssd_mobilenet_v2 import OUTPUT_NAMES


class Detector:
    """A .tflite detector on the LiteRT interpreter: its "network" signature (image -> box
    encodings and class scores) then its "postprocess" signature (TFLite_Detection_PostProcess).

    The post-processing always runs on a 1-thread interpreter. With num_threads=N > 1, the
    op's multi-threaded regular NMS (LiteRT 2.3.0, still as in tensorflow#56058) never visits
    class column N: with 2 threads no "car" is ever detected. Only the network gets `threads`.
    """

    def __init__(self, model_path: str | Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter
        try:
            self._interpreters = [Interpreter(model_path=str(model_path), num_threads=n)
                                  for n in (threads, 1)]
        except ValueError as exc:  # LiteRT's message for a truncated or foreign file
            raise PipelineError(f"{model_path} is not a valid .tflite model (corrupt? rerun "
                                f"det_convert): {str(exc).splitlines()[0]}") from None
        signatures = self._interpreters[0].get_signature_list()
        if set(signatures) != {"network", "postprocess"} or \
                set(signatures["postprocess"]["outputs"]) != set(OUTPUT_NAMES):
            raise PipelineError(f"{model_path}: expected signatures network and postprocess with "
                             f"outputs {OUTPUT_NAMES}, got {signatures} (rerun det_convert)")
        self._network = self._interpreters[0].get_signature_runner("network")
        self._postprocess = self._interpreters[1].get_signature_runner("postprocess")

    def network(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """float32 (1, 300, 300, 3) -> {"box_encodings", "class_scores"}."""
        return self._network(image=x)

    def postprocess(self, box_encodings: np.ndarray, class_scores: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Decoded, NMS-ed detections: boxes, classes, scores of image 0 and their count."""
        out = self._postprocess(box_encodings=box_encodings, class_scores=class_scores)
        boxes, classes, scores, num = (out[n] for n in OUTPUT_NAMES)
        return boxes[0], classes[0], scores[0], int(num.reshape(-1)[0])

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        return self.postprocess(**self.network(x))
