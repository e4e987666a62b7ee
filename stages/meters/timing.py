"""Timers for benchmarks: medians over repeats after warm-up, device work waited for."""
from __future__ import annotations

import statistics
import time


def repeat_ms(fn, warmup: int, runs: int) -> list[float]:
    """Milliseconds of `runs` calls of fn() after `warmup` discarded calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def median_time(fn, repeats: int, sync=lambda: None) -> float:
    """Median wall time (s) of fn() over `repeats` runs after one warm-up; sync() waits for
    queued device work (CUDA kernels run asynchronously) before each clock read."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
