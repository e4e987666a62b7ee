"""This machine's memory bandwidth (a STREAM-style triad over arrays far larger than any
cache) and the decode bound it implies: tok/s <= bandwidth / weight bytes read per token."""
from __future__ import annotations

import statistics
import time


def triad_gb_s(mb: int = 256, repeats: int = 7) -> float:
    """Median GB/s of a = b + s*c on float64 arrays of `mb` MB each: 3 arrays' bytes move
    (read b, read c, write a; numpy's temporary-free form below). One warm-up first."""
    import numpy as np

    n = mb * 1_000_000 // 8
    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)

    def triad():
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)   # 2 passes: read c + write a, read a + b + write a = 5 arrays

    triad()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        triad()
        times.append(time.perf_counter() - t0)
    return 5 * n * 8 / statistics.median(times) / 1e9


def fraction(decode_tokens_per_s: float, bandwidth_gb_s: float, bytes_per_token: int) -> float:
    """Decode tok/s as a fraction of the bound bandwidth / bytes per token."""
    return decode_tokens_per_s / (bandwidth_gb_s * 1e9 / bytes_per_token)
