"""Linears for the fused decoder (stages/runtimes/fused_llama.py): bfloat16, or 4-bit weight-only
with asymmetric groups of `group_size` input columns, computed by torch's int4 kernel (tinygemm,
`aten._weight_int4pack_mm`, the kernel torchao's int4 weight-only uses), by GemLite's Triton
kernels, by ours (stages/runtimes/int4_gemv.py) or dequantized by tensor ops that torch.compile
fuses into the matrix-vector product. Each says how many bytes it reads."""
from __future__ import annotations

from stages.core.errors import PipelineError


def groups(weight, group_size: int):
    """(codes 0..15 as floats [out, in], scale and minimum per group [out, in/group, 1]) of
    `weight` [out, in] quantized asymmetrically per group of `group_size` input columns."""
    n, k = weight.shape
    g = weight.float().reshape(n, k // group_size, group_size)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    scale = (hi - lo).clamp(min=1e-6) / 15
    return ((g - lo) / scale).round().clamp(0, 15).reshape(n, k), scale, lo


def unfit(n: int, k: int, group_size: int, kernel: str, inner_k_tiles: int = 8) -> str:
    """Why `kernel` cannot run an n x k (out x in) matrix in groups of `group_size`; "" if it can."""
    if k % group_size:
        return f"int4: a {n}x{k} matrix has in % group_size {group_size} != 0"
    if kernel == "tinygemm" and (k % (16 * inner_k_tiles) or n % 8):
        return (f"int4: a {n}x{k} matrix needs in % {max(group_size, 16 * inner_k_tiles)} == 0 and "
                "out % 8 == 0 (torch's int4 kernel)")
    if gemlite(kernel) and k % 32:
        return f"int4 gemlite: a {n}x{k} matrix needs in % 32 == 0"
    if kernel == "triton":
        from stages.runtimes.int4_gemv import untiled
        return untiled(n, k, group_size)
    return ""


def gemlite(kernel: str) -> bool:
    """Whether an int4 kernel name is one of GemLite's (INT4 below)."""
    return issubclass(INT4.get(kernel, _Linear), Int4GemLite)


def check_widths(matrices: dict[str, tuple[int, int]], weights: int, head: int, group_size: int,
                 kernel: str) -> None:
    """One line, before any weight is built, where a width or an int4 kernel cannot run a
    decoder's `matrices` (name -> (out, in); "head" is the LM head)."""
    if weights not in (16, 4) or head not in (16, 4) or kernel not in INT4:
        raise PipelineError(f"weights and head are 16 or 4 bits (not {weights} / {head}), "
                            f"the int4 kernel one of {sorted(INT4)} (not {kernel!r})")
    for name, (n, k) in matrices.items():
        if (head if name == "head" else weights) == 4 and (why := unfit(n, k, group_size, kernel)):
            raise PipelineError(f"{name}: {why}")


def int4_pack(weight, group_size: int, inner_k_tiles: int = 8):
    """(packed weight, scales_and_zeros) of `weight` [out, in] quantized by groups(), in
    tinygemm's layout: it dequantizes (q - 8) * scale + zero, zero = min + 8 * scale (torchao's
    float zero-point domain)."""
    import torch

    n, k = weight.shape
    if why := unfit(n, k, group_size, "tinygemm", inner_k_tiles):
        raise PipelineError(why)
    codes, scale, lo = groups(weight, group_size)
    q = codes.to(torch.int32)
    sz = torch.cat([scale, lo + 8 * scale], -1).reshape(n, k // group_size, 2).transpose(0, 1)
    sz = sz.contiguous().to(torch.bfloat16)
    if weight.device.type == "cuda":
        packed = torch.ops.aten._convert_weight_to_int4pack(
            (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8), inner_k_tiles)
    else:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, inner_k_tiles)
    return packed, sz


def int4_dequant(weight, group_size: int):
    """The float weight the codes of groups() stand for (for tests and error checks)."""
    n, k = weight.shape
    codes, scale, lo = groups(weight, group_size)
    return (codes.reshape(n, k // group_size, group_size) * scale + lo).reshape(n, k)


def rms(t) -> float:
    return t.pow(2).mean().sqrt().item()


class _Linear:
    """A decoder linear: callable on activations; tensors() are what it reads per call."""

    def tensors(self) -> list:
        raise NotImplementedError

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())


class Int4Linear(_Linear):
    """y = x W^T with W from int4_pack, in bfloat16 (CUDA sm80+, or torch's CPU twin)."""

    def __init__(self, weight, group_size: int):
        self.packed, self.sz = int4_pack(weight, group_size)
        self.group_size, self.out = group_size, weight.shape[0]

    def __call__(self, x):
        import torch

        mm = torch.ops.aten._weight_int4pack_mm if x.device.type == "cuda" \
            else torch.ops.aten._weight_int4pack_mm_for_cpu
        y = mm(x.reshape(-1, x.shape[-1]), self.packed, self.group_size, self.sz)
        return y.reshape(*x.shape[:-1], self.out)

    def tensors(self) -> list:
        return [self.packed, self.sz]


class Int4Dequant(_Linear):
    """The same 4-bit codes (two a byte), scales and minimums, dequantized inside the step by
    plain tensor ops: under torch.compile the unpacking fuses into the one-row matrix-vector
    reduction, which then reads the packed bytes once (no int4 kernel needed). Byte j of a group
    holds codes 2j and 2j+1 (low nibble first)."""

    def __init__(self, weight, group_size: int):
        import torch

        codes, scale, lo = groups(weight, group_size)
        self.shape, self.group_size = tuple(weight.shape), group_size
        self.packed = self.pack(codes.to(torch.uint8).reshape(self.shape[0], -1, group_size))
        self.scale, self.lo = scale.to(torch.bfloat16), lo.to(torch.bfloat16)

    @staticmethod
    def pack(q):
        """[out, groups, group] codes -> [out, in/2] bytes."""
        return (q[..., ::2] | q[..., 1::2] << 4).reshape(q.shape[0], -1)

    def unpack(self):
        """[out, in/2] bytes -> [out, groups, group] codes."""
        import torch
        return torch.stack([self.packed & 15, self.packed >> 4], -1).reshape(self.shape[0], -1, self.group_size)

    def __call__(self, x):
        import torch.nn.functional as F

        w = (self.unpack().to(x.dtype) * self.scale.to(x.dtype) + self.lo.to(x.dtype)).reshape(self.shape)
        return F.linear(x, w)

    def tensors(self) -> list:
        return [self.packed, self.scale, self.lo]


class Int4Triton(Int4Dequant):
    """The codes in the Triton kernel's layout (stages/runtimes/int4_gemv.py: byte j of a group
    holds codes j and j + group/2); a one-row input (a decode step) goes through that kernel,
    longer inputs (the prompt) through the tensor ops."""

    @staticmethod
    def pack(q):
        half = q.shape[-1] // 2
        return (q[..., :half] | q[..., half:] << 4).reshape(q.shape[0], -1)

    def unpack(self):
        import torch
        p = self.packed.reshape(self.shape[0], -1, self.group_size // 2)
        return torch.cat([p & 15, p >> 4], -1)

    def __call__(self, x):
        from stages.runtimes.int4_gemv import int4_gemv

        n, k = self.shape
        if x.numel() != k:
            return super().__call__(x)
        y = int4_gemv(x.reshape(k), self.packed, self.scale.reshape(n, -1), self.lo.reshape(n, -1),
                      self.group_size)
        return y.reshape(*x.shape[:-1], n)


class Int4GemLite(_Linear):
    """The codes of groups() through GemLite (dropbox/gemlite, Triton; its GEMV RevSplit-K kernel
    for one row, GEMM kernels for the prompt), with GemLite's autotuned configs for the GPU.
    GemLite takes HQQ's (q - zero) * scale, so zero = -minimum / scale; with `fma_mode` it
    stores -zero * scale (the minimum again) and computes q * scale + minimum. Checked against
    the dequantized product of the same codes when built, since no CPU test can run GemLite
    (it reads the GPU's properties when imported)."""

    def __init__(self, weight, group_size: int):
        import torch
        from gemlite import DType, GemLiteLinear

        n, k = weight.shape
        if why := unfit(n, k, group_size, "gemlite"):
            raise PipelineError(why)
        codes, scale, lo = groups(weight, group_size)
        self.out, self.lin = n, GemLiteLinear(4, group_size=group_size, in_features=k, out_features=n,
                                              input_dtype=DType.BF16, output_dtype=DType.BF16)
        zero = (-lo / scale).reshape(n, -1)
        self.lin.pack(codes.to(torch.uint8), scale.reshape(n, -1).to(torch.bfloat16),
                      zero.to(torch.bfloat16), None, fma_mode=True)
        # The check: the kernel's RMS error against the dequantized product, over all outputs,
        # must stay under a third of the error the int4 codes themselves make (against the
        # bfloat16 weight), so it adds under 6 % to it in quadrature; a wrong layout is off by
        # ~100 %. GemLite's batch-1 kernel (GEMV RevSplit-K) has each program reduce a short K
        # slice and add it atomically into the bfloat16 output, so an output carries one
        # bfloat16 rounding per slice, tens of them: an H100 showed 2.0 % (RMS) on a 3072x8192
        # matrix, where int4 itself is off by ~10 % on random weights
        x = torch.randn(1, k, device=weight.device, dtype=torch.bfloat16)
        want = x.float() @ (codes.reshape(n, -1, group_size) * scale + lo).reshape(n, k).T
        full = x.float() @ weight.float().T
        self.error = rms(self(x).float() - want) / rms(want)
        self.int4_error = rms(want - full) / rms(full)
        if not self.error <= self.int4_error / 3:
            raise PipelineError(f"gemlite: a {n}x{k} int4 product is off by {self.error:.3g} (RMS, relative), "
                                f"over a third of int4's own error ({self.int4_error:.3g})")

    def __call__(self, x):
        return self.lin(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], self.out)

    def tensors(self) -> list:
        return [t for t in (self.lin.W_q, self.lin.scales, self.lin.zeros) if t is not None]


class Int4GemLiteCached(Int4GemLite):
    """Int4GemLite with GemLite's kernel caching: a one-row product adds into a slot of a ring of
    256 outputs per output width, the ring zeroed once when it wraps (once a step inside a CUDA
    graph), instead of a zeroed output (one memset kernel) per call: 112 fewer kernels a 3B step."""

    def __init__(self, weight, group_size: int):
        import gemlite

        gemlite.set_kernel_caching(True)
        super().__init__(weight, group_size)


class DenseLinear(_Linear):
    def __init__(self, weight):
        self.w = weight

    def __call__(self, x):
        import torch.nn.functional as F
        return F.linear(x, self.w)

    def tensors(self) -> list:
        return [self.w]


INT4 = {"tinygemm": Int4Linear, "inductor": Int4Dequant, "triton": Int4Triton,   # int4 kernel -> linear
        "gemlite": Int4GemLite, "gemlite_cached": Int4GemLiteCached}


def linear(weight, bits: int, group_size: int, kernel: str = "tinygemm"):
    return DenseLinear(weight) if bits == 16 else INT4[kernel](weight, group_size)
