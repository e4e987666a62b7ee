"""Helpers of the OpenVINO plugin (stages/runtimes/lm/openvino.py): compiling the stateful IR
(the CPU plugin's fused SDPA node holds the KV cache as state), the decode loop that feeds
only the new ids and the mask, as a deployment does, and the bytes one decode step reads."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError

VERSIONS = ("openvino", "nncf")
IR = "openvino_model.xml"   # + openvino_model.bin: the weights


def require(module: str = "openvino"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PipelineError(f"the OpenVINO runtime needs the pip package '{module}' ({exc}); "
                            "install the project's dependencies with `bash setup.sh`") from None


# OpenVINO's CPU plugin runs int8/int4-compressed weights with the activations quantized to int8
# on the fly ("dynamic quantization"). On a CPU without VNNI (AVX2 only; seen in CI, reproduced
# with ONEDNN_MAX_CPU_ISA=AVX2) oneDNN has no primitive for that and the first infer fails with
# "could not create a primitive descriptor"; there it is switched off (fp32 activations, the
# same weights), and the metric files record which way each variant ran.
NO_DYNAMIC_QUANT = {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}
NO_PRIMITIVE = "could not create a primitive descriptor"


def compile_model(folder: Path, threads: int):
    """(compiled stateful model, its runtime_config), checked by a first infer."""
    ov = require()
    path = folder / IR
    if not path.is_file():
        raise PipelineError(f"no {IR} in {folder}: not an OpenVINO build (lm_build with runtime openvino)")
    core = ov.Core()
    model = core.read_model(str(path))
    # f32 KV cache: the plugin's default (u8) would be a lossy compression the variant names do
    # not say; at these lengths (<= 96 cached tokens) it is worth 2 % (int4: 10.53 vs 10.72 ms a step)
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1,
              "KV_CACHE_PRECISION": "f32"}
    cm = core.compile_model(model, "CPU", config)
    if _runs(cm):
        return cm, {"dynamic_quantization": "on", "kv_cache": "stateful, f32"}
    cm = core.compile_model(model, "CPU", {**config, **NO_DYNAMIC_QUANT})
    if _runs(cm):
        return cm, {"dynamic_quantization": "off: no oneDNN primitive for it on this CPU",
                    "kv_cache": "stateful, f32"}
    raise PipelineError(f"OpenVINO cannot run {folder} on this CPU, with or without dynamic quantization")


def _runs(cm) -> bool:
    """A prefill and a decode step (both kinds of primitive get created). False where the CPU
    plugin has none for this CPU: the error above, or (the tiny test model) empty logits."""
    run = Decoder(cm)
    try:
        return [run.step(ids).shape[0] for ids in ([0, 0], [0])] == [2, 1]
    except (RuntimeError, IndexError) as exc:
        if isinstance(exc, RuntimeError) and NO_PRIMITIVE not in str(exc):
            raise
        return False


class Decoder:
    """One infer request over the compiled stateful graph; its state is the KV cache."""

    def __init__(self, cm):
        self.ov, self.req = require(), cm.create_infer_request()
        self.req.set_tensor("beam_idx", self.ov.Tensor(np.zeros(1, dtype=np.int32)))   # batch 1: no reordering
        self.reset()

    def reset(self) -> None:
        self.req.reset_state()
        self.n = 0

    def step(self, ids: list[int]) -> np.ndarray:
        """Run `ids` after the cached ones; logits [len(ids), vocab] (a view, valid until the next step)."""
        self.n += len(ids)
        self.req.set_tensor("input_ids", self.ov.Tensor(np.asarray([ids], dtype=np.int64)))
        self.req.set_tensor("attention_mask", self.ov.Tensor(np.ones((1, self.n), dtype=np.int64)))
        self.req.infer()
        return self.req.get_tensor("logits").data[0]


def weight_bytes_per_token(folder: Path) -> int:
    """Bytes of the weights one decode step reads: every weight constant (>= 1024 elements:
    weights, their scales and zero points) once, the tied embedding / LM head table included
    (the head reads it whole); from the IR's Constant ops, not the file (which holds small ones)."""
    import math

    model = require().Core().read_model(str(folder / IR))
    return sum(op.get_byte_size() for op in model.get_ops() if op.get_type_name() == "Constant"
               and math.prod(op.get_output_partial_shape(0).to_shape()) >= 1024)
