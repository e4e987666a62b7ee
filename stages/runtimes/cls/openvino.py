"""OpenVINO: the node converted with openvino.convert_model; fp16 stores the weights in
half precision (compress_to_fp16); int8_static is NNCF post-training quantization
(nncf.quantize, transformer preset) calibrated on training examples."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError
from stages.models import encoder
from stages.runtimes.cls.base import Batch, ClsRuntime, Session, logits_module


class OvSession(Session):
    def __init__(self, path: Path, threads: int):
        import openvino as ov

        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", {
                "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY"})
        except Exception as exc:   # OpenVINO raises RuntimeError with a page of context
            raise PipelineError(f"OpenVINO cannot load {path}: {str(exc).splitlines()[0]}") from None
        self.request = self.compiled.create_infer_request()

    def logits(self, batch: Batch) -> np.ndarray:
        return self.request.infer(batch)[self.compiled.output(0)].copy()


class OpenVino(ClsRuntime):
    name = "openvino"
    weights = ("model.xml", "model.bin")

    def build(self, node: Path, out: Path, precision: str, calib: list[Batch]) -> None:
        import nncf
        import openvino as ov
        import torch

        model, tok = encoder.load(node)
        example = {k: torch.from_numpy(calib[0][k]) for k in ("input_ids", "attention_mask")}
        ov_model = ov.convert_model(logits_module(model), example_input=example,
                                    input=[("input_ids", [-1, -1], ov.Type.i64),
                                           ("attention_mask", [-1, -1], ov.Type.i64)])
        if precision == "int8_static":
            ov_model = nncf.quantize(ov_model, nncf.Dataset(calib), model_type=nncf.ModelType.TRANSFORMER,
                                     subset_size=len(calib))
        out.mkdir()
        tok.save_pretrained(out)
        ov.save_model(ov_model, out / "model.xml", compress_to_fp16=precision == "fp16")

    def open(self, folder: Path, threads: int) -> Session:
        return OvSession(folder / "model.xml", threads)


RUNTIME = OpenVino()
