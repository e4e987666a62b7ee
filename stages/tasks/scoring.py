"""LAMBADA scoring through any runtime's Session (stages/runtimes/lm/base.py): one example at a
time (batch 1, no padding), the logits of the target's positions from an empty cache, scored
exactly as the harness scores them (stages/tasks/lambada.py). The runtime never sees the task."""
from __future__ import annotations

from tqdm import tqdm

from stages.tasks import lambada as S


CHUNK = 64   # examples handed to the session at once (it may batch within a chunk)


def score_session(session, reqs, k: int, on_rows=None) -> list[dict]:
    """Per-example scores, in input order, of encode_examples' requests. on_rows(i, ids, logits)
    sees each example's tail logits [n, vocab] (the reference and fidelity use them)."""
    import torch

    scores = []
    with tqdm(total=len(reqs), desc="scoring", unit="example", disable=None) as bar:
        for start in range(0, len(reqs), CHUNK):
            chunk = reqs[start:start + CHUNK]
            tails = session.tail_logits_many([(ids, n) for ids, n, _ in chunk])
            for i, (t, (ids, _, cont)) in enumerate(zip(tails, chunk), start):
                scores.append(S.score_continuation(torch.from_numpy(t), cont, k))
                if on_rows:
                    on_rows(i, ids, t)
            bar.update(len(chunk))
    return scores



class _TokenizerDefault:
    """A tokenizer whose encode always adds what its own template adds, as lm-evaluation-harness
    0.4.13 encodes for a causal model (HFLM.tok_encode leaves add_special_tokens at the
    tokenizer's default): a BOS for Gemma's (and Llama 3's) tokenizer, nothing for SmolLM2's
    or Qwen2's. encode_examples' pair split is kept, so the BOS stays with the context."""

    def __init__(self, tok):
        self.tok = tok

    def __call__(self, text: str, add_special_tokens: bool = True):
        return self.tok(text, add_special_tokens=True)


def encode(tok, texts: list[str], max_length: int):
    """encode_examples' requests with the harness's special-token rule for this tokenizer."""
    return S.encode_examples(_TokenizerDefault(tok), texts, max_length)
