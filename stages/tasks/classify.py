"""Scoring a classifier: accuracy and macro-F1 (scikit-learn's f1_score) with seeded
bootstrap 95% intervals, and the paired difference to a reference on the same examples (the
same resamples drawn for both, so their correlation narrows the interval)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from stages.core.errors import PipelineError
from stages.tasks.intervals import bootstrap


def macro_f1(labels: np.ndarray, preds: np.ndarray, n_labels: int) -> float:
    return float(f1_score(labels, preds, labels=list(range(n_labels)), average="macro", zero_division=0))


def resampled(labels: np.ndarray, preds: np.ndarray, n_labels: int, samples: int, seed: int) -> list[float]:
    """[low, high] 95% percentile interval of macro-F1 over example resamples."""
    rng = np.random.default_rng(seed)
    stats = [macro_f1(labels[idx], preds[idx], n_labels)
             for idx in (rng.integers(0, len(labels), len(labels)) for _ in range(samples))]
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [float(lo), float(hi)]


def score(labels: list[int], preds: list[int], n_labels: int, samples: int, seed: int) -> dict:
    y, p = np.asarray(labels), np.asarray(preds)
    if len(y) != len(p) or not len(y):
        raise PipelineError(f"scoring: {len(p)} predictions for {len(y)} labels")
    correct = (y == p).astype(np.float64)
    return {"acc": float(correct.mean()), "acc_ci95": bootstrap(correct, samples, seed),
            "macro_f1": macro_f1(y, p, n_labels), "macro_f1_ci95": resampled(y, p, n_labels, samples, seed),
            "num_examples": int(len(y))}


def paired(correct: list[int], reference: list[int], samples: int, seed: int) -> dict:
    """Accuracy difference to the reference on the same examples, with its paired interval."""
    a, b = np.asarray(correct, np.float64), np.asarray(reference, np.float64)
    if a.shape != b.shape:
        raise PipelineError(f"paired scoring: {len(a)} examples against the reference's {len(b)}")
    d = a - b
    return {"delta_acc": float(d.mean()), "delta_acc_ci95": bootstrap(d, samples, seed)}
