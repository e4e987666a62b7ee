"""A batch-1 int4 matrix-vector product in Triton, for the fused decoder's `kernel: triton`.

Why hand-written: at batch 1 a decode step is one matrix-vector product per linear, bound by
reading the weights. torch's int4 kernel (tinygemm) reads them at about half the HBM rate on an
H100, and the kernels built for this job (Marlin, Machete) come compiled only inside packages
that pin their own torch (GPTQModel, vLLM). Triton ships with every CUDA torch, so this kernel
needs nothing beside it.

Layout (int4_linear.Int4Triton packs it): per group of G input columns, byte j holds code j in
its low nibble and code j + G/2 in its high one, so both halves meet contiguous slices of x; a
bfloat16 scale and minimum per group. Per row,

    y[n] = sum_g scale[n,g] * (q[n,g] . x[g]) + min[n,g] * sum(x[g])

and a nibble becomes a float by its bits (OR into 2^23's mantissa, then subtract 2^23), which
is cheaper than an integer-to-float conversion. Each program owns BLOCK_N rows and walks the
input GROUPS groups at a time; the autotuner picks both per matrix shape.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

CONFIGS = [triton.Config({"BLOCK_N": n, "GROUPS": g}, num_warps=w)
           for n, g, w in ((2, 4, 4), (2, 8, 4), (4, 1, 4), (4, 2, 4), (4, 4, 4), (4, 8, 8),
                           (8, 1, 4), (8, 2, 4), (8, 4, 8), (16, 1, 4), (16, 2, 8), (32, 1, 8))]


def _fitting(configs, named_args, **kwargs):
    """The configs whose blocks tile the matrix exactly (the kernel has no masks)."""
    n, k, g = named_args["N"], named_args["K"], named_args.get("G", kwargs.get("G"))
    return [c for c in configs if n % c.kwargs["BLOCK_N"] == 0 and k % (c.kwargs["GROUPS"] * g) == 0]


@triton.jit
def _gemv(x_ptr, w_ptr, s_ptr, m_ptr, y_ptr, N, K,
          G: tl.constexpr, BLOCK_N: tl.constexpr, GROUPS: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    g = tl.arange(0, GROUPS)
    j = tl.arange(0, G // 2)
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(0, K, GROUPS * G):
        col = k0 + g[:, None] * G + j[None, :]                   # [GROUPS, G/2]: low nibbles' columns
        xl = tl.load(x_ptr + col).to(tl.float32)
        xh = tl.load(x_ptr + col + G // 2).to(tl.float32)        # high nibbles' columns
        byte = k0 // 2 + g[:, None] * (G // 2) + j[None, :]
        w = tl.load(w_ptr + rows[:, None, None] * (K // 2) + byte[None, :, :]).to(tl.int32)
        lo = ((w & 15) | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0
        hi = ((w >> 4) | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0
        d = tl.sum(lo * xl[None, :, :] + hi * xh[None, :, :], axis=2)   # q . x per group
        gi = (k0 // G + g)[None, :]
        s = tl.load(s_ptr + rows[:, None] * (K // G) + gi).to(tl.float32)
        m = tl.load(m_ptr + rows[:, None] * (K // G) + gi).to(tl.float32)
        acc += tl.sum(d * s + m * tl.sum(xl + xh, axis=1)[None, :], axis=1)
    tl.store(y_ptr + rows, acc.to(y_ptr.dtype.element_ty))


def untiled(n: int, k: int, group_size: int, configs=CONFIGS) -> str:
    """Why no config tiles an n x k (out x in) matrix in groups of `group_size`; "" if one does."""
    if _fitting(configs, {"N": n, "K": k, "G": group_size}):
        return ""
    return f"int4 triton: no block size tiles a {n}x{k} matrix in groups of {group_size}"


_tuned = triton.autotune(configs=CONFIGS, key=["N", "K"], prune_configs_by={"early_config_prune": _fitting})(_gemv)


def gemv(x, packed, scale, lo, group_size: int, config: triton.Config | None = None):
    """x [K] · dequant(packed [N, K/2] uint8 in the layout above, scale and lo [N, K/group_size])ᵀ
    -> [N] in x's dtype.
    Refused where no block config tiles the matrix (out odd, or in not a multiple of the group).
    `config` runs one of CONFIGS instead of the autotuned choice (tests run each one)."""
    n, k = packed.shape[0], packed.shape[1] * 2
    if why := untiled(n, k, group_size, [config] if config else CONFIGS):
        raise ValueError(why)
    y = torch.empty(n, dtype=x.dtype, device=x.device)
    if config is None:
        _tuned[lambda meta: (n // meta["BLOCK_N"],)](x, packed, scale, lo, y, n, k, G=group_size)
    else:
        _gemv[(n // config.kwargs["BLOCK_N"],)](x, packed, scale, lo, y, n, k, G=group_size,
                                                 num_warps=config.num_warps, **config.kwargs)
    return y


@torch.library.custom_op("byte_sized::int4_gemv", mutates_args=())
def int4_gemv(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, lo: torch.Tensor,
              group_size: int) -> torch.Tensor:
    """gemv() as one opaque op, so torch.compile calls the autotuned kernel as it is."""
    return gemv(x, packed, scale, lo, group_size)


@int4_gemv.register_fake
def _(x, packed, scale, lo, group_size):
    return x.new_empty(packed.shape[0])
