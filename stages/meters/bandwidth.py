"""The read bandwidth this machine reaches on one decode step's weights (their size, the
benchmark's thread count) and the decode bound it implies: tok/s <= bandwidth / weight bytes
read per token. A decode that beats its bound (a fraction above 1) marks the bound invalid for
that row: the report never prints more than 100 %."""
from __future__ import annotations

import statistics
import time


def read_gb_s(nbytes: int, threads: int, repeats: int = 7) -> float:
    """Median GB/s of reading `nbytes` once (a float32 tensor summed by torch on `threads`
    threads, as the benchmark decodes): the working set of one decode step, so the caches it
    fits in count for the bound as they do for the model. One warm-up first."""
    import torch

    torch.set_num_threads(threads)
    x = torch.ones(max(nbytes // 4, 1024), dtype=torch.float32)
    x.sum()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - t0)
    return x.numel() * 4 / statistics.median(times) / 1e9


def fraction(decode_tokens_per_s: float, bandwidth_gb_s: float, bytes_per_token: int) -> float:
    """Decode tok/s as a fraction of the bound bandwidth / bytes per token."""
    return decode_tokens_per_s / (bandwidth_gb_s * 1e9 / bytes_per_token)


def shown(frac: float | None) -> str:
    """A row's fraction of its bound as the report prints it: never above 100 %."""
    return "–" if frac is None else f"{100 * frac:.0f} %" if frac <= 1 else "bound invalid (>100 %)"
