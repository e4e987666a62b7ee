"""The OpenVINO variants of the language model: the base exported by stages/methods/ov_export.py
(PyTorch -> stateful OpenVINO graph, SDPA attention), for int8/int4 compressed by NNCF's
data-free weight compression on its OpenVINO backend, as `optimum-cli export openvino
--weight-format int8|int4` does:
- int8 = INT8_ASYM per output channel, every weight, the tied embedding / LM head included;
- int4 = INT4_SYM with `group_size` columns per scale on `ratio` of the weights; NNCF's default
  keeps the first and last layer's weights (the tied embedding / LM head) at INT8_ASYM.
Stored as OpenVINO IR (openvino_model.xml/.bin), with the tokenizer and config beside it.
"""
from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

from stages.core.errors import PipelineError
from stages.methods.ov_export import export
from stages.runtimes.openvino_lm import IR, require

PRECISIONS = {"fp32": 32, "int8": 8, "int4": 4}
COPIED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def compress(model, precision: str, knobs: dict):
    nncf = require("nncf")
    if precision == "int8":
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_SYM,
                                 group_size=knobs["group_size"], ratio=knobs["ratio"])


def weight_types(model) -> dict[str, int]:
    """Weight constants (>= 1024 elements) per element type, e.g. {"f32": 3, "i4": 210, "u8": 1}."""
    sizes = [(op.get_output_element_type(0).get_type_name(), op.get_output_partial_shape(0).to_shape())
             for op in model.get_ops() if op.get_type_name() == "Constant"]
    return dict(sorted(Counter(t for t, shape in sizes if math.prod(shape) >= 1024).items()))


def build(base: Path, out: Path, precision: str, knobs: dict) -> dict[str, int]:
    """Write openvino_model.xml/.bin and the tokenizer/config files into `out` (created);
    returns the weight constants per OpenVINO element type."""
    if precision not in PRECISIONS:
        raise PipelineError(f"unknown OpenVINO precision {precision!r} (known: {', '.join(PRECISIONS)})")
    ov = require()
    model = export(base)
    if precision != "fp32":
        model = compress(model, precision, knobs)
    out.mkdir(parents=True)
    ov.save_model(model, str(out / IR), compress_to_fp16=False)   # fp16 storage would change fp32's weights
    for name in COPIED:
        if (base / name).is_file():
            shutil.copy2(base / name, out / name)
    return weight_types(model)
