"""A batch-1 int4 matrix-vector product in Triton, for the fused decoder's `kernel: triton`.

Why hand-written: at batch 1 a decode step is one matrix-vector product per linear, bound by
reading the weights. torch's int4 kernel (tinygemm) reads them at about half the HBM rate on an
H100, and the kernels built for this job (Marlin, Machete) come compiled only inside packages
that pin their own torch (GPTQModel, vLLM). Triton ships with every CUDA torch, so this kernel
needs nothing beside it. It reads the codes of int4_linear.groups() two a byte along the input
(low nibble first) with a bfloat16 scale and minimum per group, and uses

    y[n] = sum_g scale[n,g] * (q[n,g] . x[g]) + min[n,g] * sum(x[g])

so a group's codes are multiplied by x before any dequantization. Each program owns BLOCK_N
rows and walks the whole input; the autotuner picks the block sizes per matrix shape.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

CONFIGS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w)
           for n, k, w in ((2, 128, 4), (8, 128, 4), (2, 1024, 4), (4, 512, 4), (4, 1024, 4),
                           (8, 256, 4), (8, 512, 4), (8, 512, 8), (16, 256, 4), (16, 512, 8),
                           (32, 256, 8))]


def _fitting(configs, named_args, **kwargs):
    """The configs whose blocks tile the matrix exactly (the kernel has no masks)."""
    n, k, g = named_args["N"], named_args["K"], named_args.get("G", kwargs.get("G"))
    return [c for c in configs if n % c.kwargs["BLOCK_N"] == 0 and k % c.kwargs["BLOCK_K"] == 0
            and c.kwargs["BLOCK_K"] % g == 0]


@triton.jit
def _gemv(x_ptr, w_ptr, s_ptr, m_ptr, y_ptr, N, K,
          G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    half = tl.arange(0, BLOCK_K // 2)
    ng: tl.constexpr = BLOCK_K // G
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        xe = tl.load(x_ptr + k0 + 2 * half).to(tl.float32)       # x at the low nibbles' columns
        xo = tl.load(x_ptr + k0 + 2 * half + 1).to(tl.float32)   # and at the high nibbles'
        w = tl.load(w_ptr + rows[:, None] * (K // 2) + (k0 // 2 + half)[None, :])
        d = (w & 15).to(tl.float32) * xe[None, :] + (w >> 4).to(tl.float32) * xo[None, :]
        d = tl.sum(tl.reshape(d, (BLOCK_N, ng, G // 2)), axis=2)          # q . x per group
        xs = tl.sum(tl.reshape(xe + xo, (ng, G // 2)), axis=1)            # sum(x) per group
        gi = (k0 // G + tl.arange(0, ng))[None, :]
        s = tl.load(s_ptr + rows[:, None] * (K // G) + gi).to(tl.float32)
        m = tl.load(m_ptr + rows[:, None] * (K // G) + gi).to(tl.float32)
        acc += tl.sum(d * s + m * xs[None, :], axis=1)
    tl.store(y_ptr + rows, acc.to(y_ptr.dtype.element_ty))


_tuned = triton.autotune(configs=CONFIGS, key=["N", "K"], prune_configs_by={"early_config_prune": _fitting})(_gemv)


def gemv(x, packed, scale, lo, group_size: int, config: triton.Config | None = None):
    """x [K] · dequant(packed [N, K/2] uint8, scale and lo [N, K/group_size])ᵀ -> [N] in x's dtype.
    Refused where no block config tiles the matrix (out odd, in not a multiple of 128).
    `config` runs one of CONFIGS instead of the autotuned choice (tests run each one)."""
    n, k = packed.shape[0], packed.shape[1] * 2
    if not _fitting(CONFIGS, {"N": n, "K": k, "G": group_size}):
        raise ValueError(f"int4 triton: no block size tiles a {n}x{k} matrix in groups of {group_size}")
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
