"""Pure LAMBADA scoring, exactly as lm-evaluation-harness `lambada_openai` does it.

No I/O here: text -> (context, target) -> token ids -> padded batches -> per-example
scores from log-probabilities -> aggregate metrics. A runtime computes the logits.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence


def split_example(text: str) -> tuple[str, str]:
    """The harness's doc_to_text / doc_to_target: context = every word but the last
    (split on single spaces), target = " " + the last word (a whole word, never a character)."""
    if " " not in text.strip():
        raise ValueError(f"passage has no space-separated last word: {text[:60]!r}")
    context, last = text.rsplit(" ", 1)
    return context, " " + last


def encode_pair(encode: Callable[[str], list[int]], context: str,
                continuation: str) -> tuple[list[int], list[int]]:
    """The harness's TemplateLM._encode_pair: trailing spaces of the context move to the
    continuation; the continuation's ids are encode(context + continuation) minus the
    first len(encode(context)) ids, so the pair always tokenizes like the whole text."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(context + continuation)
    ctx = encode(context)
    return ctx, whole[len(ctx):]


def build_inputs(ctx: list[int], cont: list[int], max_length: int) -> tuple[list[int], int]:
    """Model input (context + continuation minus its last id, left-truncated to max_length as
    the harness does) and the number of scored continuation ids."""
    if not ctx or not cont:
        raise ValueError("empty context or continuation after tokenization")
    return (ctx + cont)[-(max_length + 1):][:-1], len(cont)


def encode_examples(tok, texts: list[str], max_length: int) -> list[tuple[list[int], int, list[int]]]:
    """(model input ids, number of target ids, target ids) per example."""
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731  (harness default)
    reqs = []
    for text in texts:
        ctx, cont = encode_pair(enc, *split_example(text))
        reqs.append((*build_inputs(ctx, cont, max_length), cont))
    return reqs


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (ties by index)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int):
    """Right-padded ids and attention mask. With right padding every real token keeps its
    position ids 0..n-1, and causal attention never looks at the pads after it."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, :len(s)] = 1
    return ids, mask


def score_continuation(rows, cont: Sequence[int], k: int) -> dict:
    """Scores of one example from the logits [len(cont), vocab] of the positions that
    predict its continuation ids (input positions inp_len-len(cont) .. inp_len-1).

    loglik: sum of log p(target id | gold prefix);
    greedy: every target id is the argmax (the harness's `acc`);
    topk_first: the first target id is among the k most likely;
    topk_word: every target id is among the k most likely given the gold prefix
    (rank = number of ids with a strictly higher logit, so ties favour the target).
    """
    import torch

    rows = rows.float().log_softmax(-1)                          # [n, vocab]
    tgt = torch.tensor(cont, dtype=torch.long, device=rows.device)
    gold = rows.gather(1, tgt[:, None])                          # [n, 1]
    ranks = (rows > gold).sum(-1)                                # [n]
    return {"loglik": float(gold.sum()),
            "greedy": bool((rows.argmax(-1) == tgt).all()),
            "topk_first": bool(ranks[0] < k),
            "topk_word": bool((ranks < k).all())}


def aggregate(scores: Sequence[dict], k: int) -> dict:
    """acc, perplexity (harness: exp(-mean target log-likelihood)), top-k accuracies."""
    n = len(scores)
    if n == 0:
        raise ValueError("no examples scored")
    return {"acc": sum(s["greedy"] for s in scores) / n,
            "ppl": math.exp(-sum(s["loglik"] for s in scores) / n),
            "topk_acc": sum(s["topk_first"] for s in scores) / n,
            "topk_word_acc": sum(s["topk_word"] for s in scores) / n,
            "k": k, "num_examples": n}
