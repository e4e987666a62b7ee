"""ONNX Runtime (CPU execution provider) runtime of the detector: model.onnx of a folder
written by det_convert_rt, then the shared NumPy post-processing (network_only.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError
from stages.runtimes.network_only import NetworkOnly, model_file, require

MODEL = "model.onnx"


class Detector(NetworkOnly):
    def __init__(self, model_path: str | Path, threads: int):
        super().__init__(model_path)
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # warnings about unused initializers off
        try:
            self._session = ort.InferenceSession(str(model_file(model_path, MODEL)), opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise PipelineError(f"{model_path}/{MODEL} is not a valid ONNX model (rerun "
                                f"det_convert_rt): {str(exc).splitlines()[0]}") from None
        self._outputs = [o.name for o in self._session.get_outputs()]
        if set(self._outputs) != {"box_encodings", "class_scores"}:
            raise PipelineError(f"{model_path}/{MODEL}: outputs {self._outputs}, expected "
                                "box_encodings and class_scores (rerun det_convert_rt)")

    def network(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """float32 (1, 300, 300, 3) -> {"box_encodings", "class_scores"}."""
        return dict(zip(self._outputs, self._session.run(self._outputs, {"image": x})))
