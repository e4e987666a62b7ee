"""Bit-reproducible float32 on CPUs, for the stages whose outputs are results (GPTQ weights,
accuracy), never for the benchmarks (they must run the kernels a deployment would).

float32 sums change with the thread count and with the kernel code path the CPU selects
(AVX-512 vs AVX2, vendor-specific MKL branches), and GPTQ's rounding compounds such last-bit
differences through the layers: a 4-point int4 accuracy swing between two machines of one
kind was traced to it. Pinning the paths to AVX2 and the threads to a fixed count makes two
runs identical here (tested); MKL documents the same for same-branch, same-thread runs
elsewhere. The variables are read once, when torch/MKL load, so this runs before torch.
"""
from __future__ import annotations

import os
import platform
import sys

from stages.core.errors import log

X86_PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_cpu_numerics(threads: int) -> None:
    """Fix kernel code paths (x86-64) and thread counts before torch is imported."""
    if "torch" in sys.modules:  # in-process callers (tests): too late for the ISA pins
        log.warning("torch already loaded: CPU kernel paths not pinned in this process")
    pins = dict(X86_PINS) if platform.machine() in ("x86_64", "AMD64") else {}
    pins.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    os.environ.update(pins)
