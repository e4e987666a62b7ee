"""LAMBADA scoring through any runtime's Session (stages/runtimes/lm/base.py): one example at a
time (batch 1, no padding), every position's logits from an empty cache, scored exactly as the
harness scores them (stages/tasks/lambada.py). The runtime never sees the task."""
from __future__ import annotations

from tqdm import tqdm

from stages.tasks import lambada as S


def score_session(session, reqs, k: int) -> list[dict]:
    """Per-example scores, in input order, of encode_examples' requests."""
    import torch

    scores = []
    for ids, n, cont in tqdm(reqs, desc="scoring", unit="example", disable=None):
        logits = session.logits(ids)
        scores.append(S.score_continuation(torch.from_numpy(logits[len(ids) - n:len(ids)]), cont, k))
    return scores
