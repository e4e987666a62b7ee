"""ONNX Runtime: the node exported to ONNX (torch.onnx), then int8 by ONNX Runtime's own
quantizer: dynamic (int8 weights, activations quantized at run time) or static (QDQ,
activations calibrated on training examples; unsigned activations and signed per-channel
weights, the x86 layout). MatMul, Gemm and the embedding Gather are quantized."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError
from stages.models import encoder
from stages.runtimes.cls.base import Batch, ClsRuntime, Session, logits_module

OPS = ["MatMul", "Gemm", "Gather"]


def export(node: Path, path: Path, calib: list[Batch]) -> None:
    import torch

    model, _ = encoder.load(node)
    example = tuple(torch.from_numpy(calib[0][k]) for k in ("input_ids", "attention_mask"))
    torch.onnx.export(logits_module(model), example, str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={k: {0: "batch", 1: "tokens"} for k in ("input_ids", "attention_mask")}
                      | {"logits": {0: "batch"}})


def calib_reader(calib: list[Batch]):
    """ONNX Runtime's CalibrationDataReader over the calibration batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calib)

        def get_next(self):
            return next(self.items, None)
    return Reader()


class OrtSession(Session):
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:   # ORT raises its own types for a corrupt or truncated file
            raise PipelineError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from None

    def logits(self, batch: Batch) -> np.ndarray:
        return self.session.run(["logits"], batch)[0]


class OnnxRuntime(ClsRuntime):
    name = "onnxruntime"
    weights = ("model.onnx", "model.onnx.data")

    def build(self, node: Path, out: Path, precision: str, calib: list[Batch]) -> None:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        out.mkdir()
        encoder.load(node)[1].save_pretrained(out)
        fp32 = out / ("model.onnx" if precision == "fp32" else "fp32.onnx")
        export(node, fp32, calib)
        if precision == "int8_dynamic":
            quantize_dynamic(fp32, out / "model.onnx", weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=OPS)
        elif precision == "int8_static":
            pre = out / "pre.onnx"
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)  # ONNX shape inference only
            quantize_static(pre, out / "model.onnx", calib_reader(calib), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True, op_types_to_quantize=OPS)
            pre.unlink()
        if precision != "fp32":
            fp32.unlink()

    def open(self, folder: Path, threads: int) -> Session:
        return OrtSession(folder / "model.onnx", threads)


RUNTIME = OnnxRuntime()
