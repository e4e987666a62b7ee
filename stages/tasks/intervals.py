"""Uncertainty of per-example metrics: the harness's standard error and seeded bootstrap
percentile intervals (resampling examples with replacement)."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def stderr(values: Sequence[float]) -> float:
    """Standard error of the mean, as lm-evaluation-harness `mean_stderr` (sample std / sqrt n)."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0


def bootstrap(values: Sequence[float], samples: int, seed: int, level: float = 0.95,
              stat: Callable[[np.ndarray], np.ndarray] = lambda m: m) -> list[float]:
    """[low, high] percentile interval of stat(mean of a resample) over `samples` resamples."""
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for start in range(0, samples, 256):   # chunks keep memory at 256 x n
        stop = min(samples, start + 256)
        means[start:stop] = x[rng.integers(0, len(x), (stop - start, len(x)))].mean(axis=1)
    lo, hi = np.percentile(stat(means), [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def lambada_intervals(scores: Sequence[dict], samples: int, seed: int) -> dict:
    """acc, top-k and perplexity intervals from per-example LAMBADA scores."""
    col = lambda key: [float(s[key]) for s in scores]  # noqa: E731
    return {"acc_stderr": stderr(col("greedy")),
            "acc_ci95": bootstrap(col("greedy"), samples, seed),
            "topk_acc_ci95": bootstrap(col("topk_first"), samples, seed),
            "topk_word_acc_ci95": bootstrap(col("topk_word"), samples, seed),
            # ppl = exp(-mean loglik): high mean loglik -> low ppl, so the ends swap.
            "ppl_ci95": sorted(bootstrap(col("loglik"), samples, seed, stat=lambda m: np.exp(-m)))}
