"""GPTQModel `gptq_v2` checkpoints -> the `gptq` (v1) layout that onnxruntime-genai's GPTQ
loader expects. v2 stores the zero points as they are; v1 stores zero - 1 (the loader adds
the 1 back). Only the packed `*.qzeros` int32 tensors and the config's format change."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError


def shift_qzeros(packed: np.ndarray, bits: int, delta: int) -> np.ndarray:
    """Every `bits`-wide field of the int32 words plus `delta`, modulo 2**bits."""
    if 32 % bits:
        raise PipelineError(f"GPTQ {bits}-bit zero points do not pack into int32 words")
    words, mask = packed.view(np.uint32).astype(np.uint64), (1 << bits) - 1
    out = np.zeros_like(words)
    for shift in range(0, 32, bits):
        field = ((words >> np.uint64(shift)) & np.uint64(mask)).astype(np.int64)
        out |= (((field + delta) & mask).astype(np.uint64) << np.uint64(shift))
    return out.astype(np.uint32).view(np.int32)


def to_v1(src: Path, dst: Path) -> dict:
    """Copy a GPTQ folder to `dst` in v1 layout; returns its quantization_config."""
    from safetensors.numpy import load_file, save_file

    cfg = json.loads((src / "config.json").read_text())
    qc = cfg.get("quantization_config") or {}
    if qc.get("quant_method") != "gptq":
        raise PipelineError(f"{src}: not a GPTQ checkpoint (quant_method={qc.get('quant_method')!r})")
    fmt = qc.get("checkpoint_format", qc.get("format", "gptq"))
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy2(f, dst / f.name)
    tensors = load_file(src / "model.safetensors")
    if fmt == "gptq_v2":
        tensors = {k: shift_qzeros(v, qc["bits"], -1) if k.endswith(".qzeros") else v
                   for k, v in tensors.items()}
    elif fmt != "gptq":
        raise PipelineError(f"{src}: unsupported GPTQ checkpoint_format {fmt!r} (gptq or gptq_v2)")
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    qc = {**qc, "checkpoint_format": "gptq", "format": "gptq"}
    (dst / "config.json").write_text(json.dumps({**cfg, "quantization_config": qc}, indent=2))
    return qc
