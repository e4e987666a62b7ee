"""AWQ (Lin et al., 2024): activation-aware weight quantization through GPTQModel 7.6's
METHOD.AWQ, at the same group size and on the same calibration passages as GPTQ.

AWQ searches, per layer, the input-channel scales that protect the weights seen by large
activations, folds them into the previous op, then rounds to nearest: no Hessian updates.

On a CPU (checked here): the scale search runs, but GPTQModel's automatic packing kernel is
CUDA's GEMM ("AWQ: CUDA is not available"), so the portable packer AwqTorchLinear is asked for
(BACKEND.AWQ_TORCH, on every device). It takes float16/bfloat16 only (awq.dtype; auto: bfloat16
on a CPU, where float16 matmuls are ~180x slower, float16 on CUDA). Not float32, even with its
dtype list widened: GPTQModel 7.6's scale search keeps its restore copy as `fc.weight.detach().to(torch.float32).cpu().contiguous()`,
which on a CPU float32 weight is the weight itself, so every candidate scale's in-place
quantization also overwrites the copy (the tiny model then scores 0; in float64 and bfloat16
the copy is real, and its layers match their scaled originals: tests/test_lm_awq.py). bfloat16 speed depends on the CPU: on an AVX2-only one it is ~50x slower
than float32 (~50 min for SmolLM2), with AVX-512 BF16 it is faster than float32 (README "AWQ").
The checkpoint is AWQ's GEMM format (float16 scales), which the CPU kernels
TorchAtenAwqLinear (int4pack), TorchFusedAwqLinear and AwqTorchLinear load in float32.

Two GPTQModel 7.6 AWQ faults, found here (2026-12-05) and worked around below (README "AWQ"):
- calibration batches of different lengths cannot be concatenated, so its AWQProcessor keeps
  the *last* batch only ("latest_batch"): one ~100-token passage drove every search. Passages
  shorter than calib_seq_len are left out (`uniform`), so all 128-token cuts are kept.
- q/k/v (and gate/up) share one captured input tensor, and apply_scale divides each layer's
  input by its scales in place, so the clip search saw x/s^3 for v_proj and x/s^2 for gate/up
  instead of x/s (llm-awq and AutoAWQ keep one tensor per layer). `unaliased` gives each its own.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

from stages.core.errors import PipelineError
from stages.methods.rtn import scrub

BITS = (4,)   # AWQ's GEMM format packs 4-bit weights only
OC_BATCH = 64  # GPTQModel's clip search takes output channels in blocks of 64 (or 256)


def check(base: Path, group_size: int) -> None:
    """A one-line error, before any work, for a model AWQ's clip search cannot take: every
    projection's outputs a multiple of 64, its inputs a multiple of the group size."""
    c = json.loads((Path(base) / "config.json").read_text())
    head = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    widths = {"hidden_size": c["hidden_size"], "intermediate_size": c["intermediate_size"],
              "k/v outputs": head * c.get("num_key_value_heads", c["num_attention_heads"])}
    for name, width in widths.items():
        if width % OC_BATCH or (group_size > 0 and width % group_size):
            raise PipelineError(f"AWQ needs every projection width divisible by {OC_BATCH} and by "
                                f"group_size={group_size}; {base.name}'s {name} is {width}")


def search_dtype(dtype: str, device: str) -> str:
    """awq.dtype resolved: auto is float16 on CUDA and bfloat16 on a CPU, where float16 matmuls
    are ~180x slower than bfloat16 (AVX-512 EPYC, README "AWQ")."""
    return ("float16" if device == "cuda" else "bfloat16") if dtype == "auto" else dtype


def uniform(calib: list[dict], seq_len: int) -> list[dict]:
    """The passages with all seq_len tokens (GPTQModel's AWQ keeps the last batch otherwise)."""
    return [c for c in calib if len(c["input_ids"][0]) == seq_len]


@contextlib.contextmanager
def unaliased():
    """GPTQModel's apply_scale, given a private copy of every input feature tensor that another
    layer shares, so that each is divided by its scales once (patched for this block only)."""
    from gptqmodel.looper import awq_processor as AP
    original = AP.apply_scale

    def apply_scale(module, scales_list, input_feat_dict=None):
        if input_feat_dict is not None:
            seen = set()
            for name, feat in input_feat_dict.items():
                ptr = feat.untyped_storage().data_ptr() if feat.numel() else None
                if ptr in seen:
                    input_feat_dict[name] = feat.clone()
                seen.add(ptr)
        return original(module, scales_list, input_feat_dict=input_feat_dict)

    AP.apply_scale = apply_scale
    try:
        yield
    finally:
        AP.apply_scale = original


def quantize(base: Path, calib: list[dict], bits: int, cfg: dict, seed: int, dest: Path,
             dtype: str = "auto") -> float:
    """AWQ-quantize at `bits` with cfg's group_size on `calib` (gptq.tokenized_calibration's
    examples, the same as GPTQ's) in `dtype` (awq.dtype), save to dest, return seconds."""
    if bits not in BITS:
        raise ValueError(f"AWQ packs {BITS} bits, not {bits}")
    check(base, cfg["group_size"])
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, cfg["threads"])))  # as rtn.py
    import torch
    from gptqmodel import BACKEND, GPTQModel
    from gptqmodel.quantization.config import AWQConfig

    torch.manual_seed(seed)
    ids = [c["input_ids"][0] for c in uniform(calib, cfg["calib_seq_len"])]   # token lists
    if not ids:
        raise PipelineError(f"AWQ: no calibration passage has quant.calib_seq_len={cfg['calib_seq_len']} tokens")
    qcfg = AWQConfig(bits=bits, group_size=cfg["group_size"], sym=True)   # sym: as GPTQ and RTN
    dtype = search_dtype(dtype, cfg["device"])
    base, dest = Path(base).resolve(), Path(dest).resolve()
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch), unaliased():   # ./logs
        t0 = time.perf_counter()
        model = GPTQModel.load(str(base), quantize_config=qcfg, device=cfg["device"],
                               dtype=getattr(torch, dtype))
        model.quantize(ids, batch_size=1, backend=BACKEND.AWQ_TORCH)
        seconds = time.perf_counter() - t0
        model.save(str(dest))
        del model
    scrub(dest)
    return seconds

