"""The OpenVINO variants of the language model: the onnxruntime-genai builder's fp32 decoder
graph (stages/methods/ort_build.py), for int8/int4 compressed by NNCF's data-free weight
compression on its ONNX backend (nncf.compress_weights: int8 = INT8_ASYM per output channel;
int4 = INT4_SYM with `group_size` columns per scale on `ratio` of the weights), stored as ONNX
(DequantizeLinear + MatMul), which OpenVINO reads and fuses into its compressed-weight kernels.

Why ONNX and not OpenVINO IR: the IR that ov.save_model writes for this graph cannot be read
back (its GroupQueryAttention comes from the ONNX frontend's "extension" opset). The tied
embedding / LM head table stays float32: NNCF's ONNX backend cannot compress a weight reached
through the Transpose that the tied head adds (it fails with "There is no tensor with the name
/model/embed_tokens/Transpose/output_0"), so that MatMul and the Gather are in the ignored scope.
"""
from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path

from stages.core.errors import PipelineError
from stages.methods.ort_build import run_builder
from stages.runtimes.openvino_lm import require

PRECISIONS = {"fp32": 32, "int8": 8, "int4": 4}
BUILDER_FP32 = {"block_size": 32, "accuracy_level": 4, "quantize_head": True}   # unused at fp32
COPIED = ("genai_config.json", "tokenizer.json", "tokenizer_config.json")
TIED = ["/lm_head/MatMul", "/model/embed_tokens/Gather"]   # the tied table's two users


def compress(model, precision: str, knobs: dict):
    nncf = require("nncf")
    scope = nncf.IgnoredScope(names=TIED)
    if precision == "int8":
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM, ignored_scope=scope)
    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_SYM, ignored_scope=scope,
                                 group_size=knobs["group_size"], ratio=knobs["ratio"])


def build(base: Path, out: Path, precision: str, knobs: dict) -> dict[str, int]:
    """Write model.onnx(+.data), genai_config.json and the tokenizer into `out` (created);
    returns the weight initializers per ONNX element type (e.g. {"FLOAT": 3, "INT4": 150})."""
    import onnx

    if precision not in PRECISIONS:
        raise PipelineError(f"unknown OpenVINO precision {precision!r} (known: {', '.join(PRECISIONS)})")
    with tempfile.TemporaryDirectory(prefix="ov-onnx-") as tmp:
        src = Path(tmp) / "onnx"
        run_builder(base, src, "fp32", BUILDER_FP32)
        out.mkdir(parents=True)
        model = onnx.load(str(src / "model.onnx"))
        if precision != "fp32":
            model = compress(model, precision, knobs)
        onnx.save(model, str(out / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
        for name in COPIED:
            shutil.copy2(src / name, out / name)
    big = [t for t in model.graph.initializer if len(t.dims) > 1 or (t.dims and t.dims[0] >= 1024)]
    return dict(sorted(Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in big).items()))
