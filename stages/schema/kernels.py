"""GPTQModel 7.6's GPTQ inference kernels: what each runs on, as declared by the kernel
classes themselves (SUPPORTS_BITS / SUPPORTS_DEVICES in gptqmodel/nn_modules/qlinear/).

Kept as a table here, not read from gptqmodel at check time, so that check_params can reject
a (kernel, width, device) that cannot run in well under a second, before anything imports
torch. tests/test_lm_kernels.py checks the table against the installed package.
"""
from __future__ import annotations

from typing import NamedTuple


class Kernel(NamedTuple):
    layer: str                  # the nn.Module class the kernel's layers have after loading
    bits: frozenset[int]        # weight widths it runs
    devices: frozenset[str]     # "cpu", "cuda"


_ANY = frozenset({2, 3, 4, 8})
KERNELS: dict[str, Kernel] = {
    # unpacks the weights on every call (torch.compile'd); any width, any device
    "gptq_torch": Kernel("TorchLinear", _ANY, frozenset({"cpu", "cuda"})),
    # re-quantizes to per-channel int8 at load, then aten::_weight_int8pack_mm (CPU only)
    "gptq_torch_int8": Kernel("TorchInt8Linear", frozenset({2, 4, 8}), frozenset({"cpu"})),
    # aten::_weight_int4pack_mm_for_cpu, the int4pack kernel (CPU only, 4-bit only)
    "gptq_torch_aten": Kernel("TorchAtenLinear", frozenset({4}), frozenset({"cpu"})),
    # torch int4 fused dequant-matmul (built for Intel XPU, runs on CPUs; 4-bit only)
    "gptq_torch_fused": Kernel("TorchFusedLinear", frozenset({4}), frozenset({"cpu"})),
    # CUDA kernels
    "gptq_marlin": Kernel("MarlinLinear", frozenset({4, 8}), frozenset({"cuda"})),
    "gptq_triton": Kernel("TritonV2Linear", frozenset({2, 4, 8}), frozenset({"cuda"})),
    # CUTLASS mixed-input GEMM for Hopper (SM90+)
    "gptq_machete": Kernel("MacheteLinear", frozenset({4, 8}), frozenset({"cuda"})),
}
AUTO = "auto"                   # GPTQModel's own choice (TorchLinear on a CPU, Marlin on CUDA)


def kernel_for(backend: str | dict[int, str], bits: int) -> str:
    """The backend name to load a `bits`-wide checkpoint with (a per-width mapping or one name)."""
    if isinstance(backend, dict):
        if bits not in backend:
            raise ValueError(f"names no kernel for {bits}-bit weights (keys: {sorted(backend)})")
        return backend[bits]
    return backend


def check(backend: str | dict[int, str], bits: list[int], device: str) -> None:
    """ValueError (one line) for an unknown kernel or one that cannot run a width/device."""
    for b in bits:
        name = kernel_for(backend, b)
        if name == AUTO:
            continue
        if name not in KERNELS:
            raise ValueError(f"unknown GPTQ kernel {name!r}; choose from {[AUTO, *KERNELS]}")
        k = KERNELS[name]
        if b not in k.bits:
            raise ValueError(f"kernel {name} cannot run {b}-bit weights (it runs "
                             f"{sorted(k.bits)} bits); pick another for int{b}")
        if device not in k.devices:
            raise ValueError(f"kernel {name} runs on {sorted(k.devices)}, not {device}")
