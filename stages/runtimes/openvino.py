"""OpenVINO (CPU plugin) runtime of the detector: model.xml/.bin of a folder written by
det_convert_rt, compiled with f32 inference precision (the CPU plugin would otherwise pick
bf16 on CPUs that have it), then the shared NumPy post-processing (network_only.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError
from stages.runtimes.network_only import NetworkOnly, model_file, require

MODEL = "model.xml"


class Detector(NetworkOnly):
    def __init__(self, model_path: str | Path, threads: int):
        super().__init__(model_path)
        ov = require("openvino")
        core = ov.Core()
        try:
            model = core.read_model(str(model_file(model_path, MODEL)))
            self._compiled = core.compile_model(model, "CPU", {
                "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
        except RuntimeError as exc:
            raise PipelineError(f"{model_path}/{MODEL} is not a valid OpenVINO model (rerun "
                                f"det_convert_rt): {str(exc).splitlines()[0]}") from None
        self._outputs = {o.get_any_name(): o for o in self._compiled.outputs}
        if set(self._outputs) != {"box_encodings", "class_scores"}:
            raise PipelineError(f"{model_path}/{MODEL}: outputs {sorted(self._outputs)}, "
                                "expected box_encodings and class_scores (rerun det_convert_rt)")
        self._request = self._compiled.create_infer_request()

    def network(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """float32 (1, 300, 300, 3) -> {"box_encodings", "class_scores"}."""
        res = self._request.infer({0: x})
        return {name: np.array(res[port]) for name, port in self._outputs.items()}
