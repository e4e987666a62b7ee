"""Fidelity of a variant to its model's reference on the scored positions, as llama.cpp's
`perplexity --kl-divergence` measures it: the KL divergence KL(P_ref || P_variant) of the
next-token distributions, and whether the top-1 prediction is the same. Pure: log-probabilities
in, per-example values out. The reference's rows are stored by the lm_reference stage
(stages/entry/lm_reference.py) and read back here (`Reference`).

Per example (its positions are those that predict the LAMBADA target's ids):
  kl: the mean over its positions of sum_v p_ref(v) (log p_ref(v) - log p_var(v)), in nats;
  agree: every position's argmax equals the reference's (the predicted word is the same).
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError


def ids_digest(ids: list[int]) -> str:
    """A short fingerprint of one example's model input ids (same examples, same tokenizer)."""
    return hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]


def log_softmax(rows: np.ndarray) -> np.ndarray:
    """float64 log-probabilities of logits rows [n, vocab] (numpy, so the reference file and a
    variant's rows go through the same arithmetic whatever the runtime)."""
    x = np.asarray(rows, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def compare(ref_logp: np.ndarray, var_logits: np.ndarray) -> tuple[float, bool]:
    """(mean KL over the positions, same argmax at every position) of one example."""
    ref = np.asarray(ref_logp, dtype=np.float64)
    var = log_softmax(var_logits)
    if ref.shape != var.shape:
        raise PipelineError(f"reference rows {ref.shape} and variant rows {var.shape} differ: "
                            "not the same tokenizer or vocabulary")
    kl = (np.exp(ref) * (ref - var)).sum(axis=-1)
    return float(max(kl.mean(), 0.0)), bool((ref.argmax(-1) == var.argmax(-1)).all())


class Reference:
    """The reference's stored rows (an .npz of lm_reference): `logp` [positions, vocab] float32,
    `offsets` [n + 1] (example i's rows are offsets[i]:offsets[i+1]) and `digests` [n]."""

    def __init__(self, path: Path):
        if not Path(path).is_file():
            raise PipelineError(f"no reference file {path}: run the lm_reference stage of its model")
        try:
            with np.load(path) as z:
                self.logp, self.offsets, self.digests = z["logp"], z["offsets"], list(z["digests"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise PipelineError(f"{path} is not a reference file (truncated or corrupt?): {exc}") from None
        self.path = path

    def __len__(self) -> int:
        return len(self.digests)

    def rows(self, i: int, ids: list[int]) -> np.ndarray:
        """Example i's rows, after checking it is the same input as the reference scored."""
        if i >= len(self):
            raise PipelineError(f"{self.path} holds {len(self)} examples, the variant scores more: "
                                "re-run lm_reference with the same eval_lm.limit")
        if ids_digest(ids) != self.digests[i]:
            raise PipelineError(f"example {i} is not tokenized as in {self.path}: the variant's "
                                "tokenizer or the evaluation set differs from its reference's")
        return self.logp[self.offsets[i]:self.offsets[i + 1]]


def save(path: Path, logps: list[np.ndarray], digests: list[str]) -> None:
    """Write the reference's rows (float32: the KL of identical rows reads ~1e-9 nats, not 0) as an uncompressed .npz."""
    offsets = np.cumsum([0] + [len(x) for x in logps])
    with open(path, "wb") as f:
        np.savez(f, logp=np.concatenate(logps).astype(np.float32), offsets=offsets,
                 digests=np.asarray(digests))
