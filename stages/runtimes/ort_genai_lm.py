"""Helpers of the ONNX Runtime GenAI plugin (stages/runtimes/lm/ort_genai.py): the package import
with a one-line error, and the bytes of weights one decode step reads (the bandwidth bound)."""
from __future__ import annotations

from pathlib import Path

from stages.core.errors import PipelineError


def require(module: str = "onnxruntime_genai"):
    """Import a runtime package; a missing one is a one-line error naming it and setup.sh."""
    import importlib

    pip = {"onnxruntime_genai": "onnxruntime-genai", "onnxruntime": "onnxruntime",
           "onnx_ir": "onnx-ir"}[module]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PipelineError(f"the ONNX Runtime GenAI runtime needs the pip package '{pip}' "
                            f"({exc}); install the project's dependencies with `bash setup.sh`") from None


def weight_bytes_per_token(folder: Path) -> int:
    """Bytes of the weights one decode step reads: every initializer of the graph except the
    rotary caches (a decode step reads one row of them), the embedding's one row instead of
    the whole table unless the table is shared with the LM head (then read fully once)."""
    import onnx

    m = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    sizes = {}
    for t in m.graph.initializer:
        ext = {e.key: e.value for e in t.external_data}
        sizes[t.name] = int(ext["length"]) if "length" in ext else len(t.raw_data)
    gathers = [n for n in m.graph.node if n.op_type in ("Gather", "GatherBlockQuantized")
               and n.input[0] in sizes]
    heads = {i for n in m.graph.node if n.name.startswith("/lm_head/") for i in n.input}
    total = sum(v for k, v in sizes.items() if "cos_cache" not in k and "sin_cache" not in k)
    for g in gathers:   # an unshared embedding table: one row per token, not the table
        if g.input[0] not in heads:
            for name in g.input[:1] + list(g.input[2:]):
                rows = next((d.dims[0] for d in m.graph.initializer if d.name == name), 1)
                total -= sizes.get(name, 0) - sizes.get(name, 0) // max(rows, 1)
    return total
