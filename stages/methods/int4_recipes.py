"""The int4 recipes of the frontier analysis (stages/entry/lm_int4_frontier.py): their schema
(stages/methods/int4_recipes.yaml), the per-layer sensitivity that picks the 8-bit layers, and
quantizing one recipe through GPTQModel's own API (it has the per-module `dynamic` override that
transformers.GPTQConfig lacks)."""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.methods.gptq import GroupSize
from stages.methods.rtn import scrub
from stages.schema.section import Section

RECIPES = Path(__file__).with_name("int4_recipes.yaml")
SEED = 0   # calibration draw and torch seed, as methods.gptq


class Recipe(Section):
    method: Literal["gptq", "rtn"] = "gptq"
    bits: Literal[4, 8] = 4
    group_size: GroupSize = 64                     # columns sharing one scale/zero
    sym: bool = True                               # symmetric grid (zero point at the middle)
    desc_act: bool = False                         # act-order: columns by decreasing Hessian diagonal
    calib_size: int = Field(128, ge=1)             # calibration passages
    calib_seq_len: int = Field(128, ge=8)          # tokens per passage (its first)
    damp_percent: float = Field(0.01, gt=0, lt=1)  # Hessian dampening
    int8_layers: int = Field(0, ge=0)              # most sensitive decoder layers kept at 8 bits


class Sensitivity(Section):
    passages: int = Field(32, ge=1)
    group_size: GroupSize = 64
    sym: bool = True


class Frontier(Section):
    sensitivity: Sensitivity
    recipes: dict[str, Recipe]


def fake_int4(w, group: int, sym: bool):
    """w rounded to GPTQModel's int4 grid (its quantizer's scale and zero rules) and back.
    Hand-written because GPTQModel quantizes a whole model, and the measurement needs one layer
    at a time; the recipes themselves are quantized by GPTQModel."""
    import torch

    maxq = 15
    g = w.float().reshape(w.shape[0], -1, w.shape[1] if group == -1 else group)
    lo, hi = g.amin(-1, keepdim=True).clamp(max=0), g.amax(-1, keepdim=True).clamp(min=0)
    if sym:
        hi = torch.maximum(-lo, hi)
        lo = -hi
    scale = ((hi - lo) / maxq).clamp(min=1e-8)
    zero = torch.full_like(scale, (maxq + 1) / 2) if sym else torch.round(-lo / scale)
    q = torch.clamp(torch.round(g / scale) + zero, 0, maxq)
    return (scale * (q - zero)).reshape(w.shape).to(w.dtype)


def mean_loss(model, passages: list[list[int]]) -> float:
    import torch

    total, n = 0.0, 0
    with torch.inference_mode():
        for ids in passages:
            x = torch.tensor([ids], device=model.device)
            total += float(model(input_ids=x, labels=x).loss) * (len(ids) - 1)
            n += len(ids) - 1
    return total / n


def sensitivity(model, passages: list[list[int]], cfg: dict) -> list[float]:
    """Per decoder layer: the loss increase when only that layer's linears are on the int4 grid."""
    import torch

    base = mean_loss(model, passages)
    out = []
    for layer in model.model.layers:
        linears = [m for m in layer.modules() if isinstance(m, torch.nn.Linear)]
        kept = [m.weight.data.clone() for m in linears]
        for m in linears:
            m.weight.data = fake_int4(m.weight.data, cfg["group_size"], cfg["sym"])
        out.append(mean_loss(model, passages) - base)
        for m, w in zip(linears, kept):
            m.weight.data = w
    return out


def dynamic_for(layers: list[int]) -> dict | None:
    """GPTQModel's per-module override: these decoder layers at 8 bits (the group size kept)."""
    if not layers:
        return None
    return {rf"+:^model\.layers\.({'|'.join(map(str, sorted(layers)))})\.": {"bits": 8}}


def quantize(base: Path, recipe: dict, calib: list[list[int]], layers8: list[int], device: str,
             dest: Path) -> float:
    """One recipe through GPTQModel's own API (it has the per-module `dynamic` override that
    transformers.GPTQConfig lacks), saved GPTQ-format to dest; the seconds it took."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")   # its loader needs 2 (stages/methods/rtn.py)
    import torch
    from gptqmodel import GPTQModel, QuantizeConfig

    kw = {"weight_only": "rtn"} if recipe["method"] == "rtn" else {"damp_percent": recipe["damp_percent"]}
    qcfg = QuantizeConfig(bits=recipe["bits"], group_size=recipe["group_size"], sym=recipe["sym"],
                          desc_act=recipe["desc_act"], dynamic=dynamic_for(layers8), **kw)
    torch.manual_seed(SEED)
    dtype = torch.float16 if device == "cuda" else torch.float32
    base, dest = Path(base).resolve(), Path(dest).resolve()
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):   # its ./logs
        t0 = time.perf_counter()
        model = GPTQModel.load(str(base), quantize_config=qcfg, device=device, dtype=dtype)
        if recipe["method"] == "rtn":
            model.quantize()
        else:
            model.quantize(calib, batch_size=1)
        seconds = time.perf_counter() - t0
        model.save(str(dest))
        del model
    scrub(dest)
    return seconds


def load_quantized(folder: Path, device: str):
    """A recipe's folder: on CUDA with the Triton kernel (it runs 4 and 8 bits, symmetric or not,
    and GPTQModel's automatic pick on Hopper, Machete, generates CUTLASS sources at first use),
    elsewhere with GPTQModel's pick. It reads the `dynamic` override."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    from gptqmodel import BACKEND, GPTQModel

    backend = BACKEND.TRITON if device == "cuda" else BACKEND.AUTO
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        return GPTQModel.load(str(Path(folder).resolve()), device=device, backend=backend).model.eval()
