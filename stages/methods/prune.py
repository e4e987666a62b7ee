"""Magnitude pruning of every decoder linear layer through torch.nn.utils.prune (the pinned
torch's own pruning API; llm-compressor 0.14, which has SparseGPT and Wanda, requires
transformers <= 5.17 against the pinned 5.23, and GPTQModel 7.6 ships no pruning pass).

- unstructured: L1 (magnitude) pruning of each layer at `sparsity` (Han et al., 2015);
- 2:4: in every 4 consecutive input weights of a row the 2 smallest are zeroed (NVIDIA's
  semi-structured sparsity), as a custom mask: torch.nn.utils.prune has no N:M method.

The embedding / tied LM head stays dense, as in SparseGPT and Wanda. The weights stay
dense float32 tensors with zeros (every runtime loads them): `sparse_bytes` is the size the
same model takes with each pruned matrix stored as a bitmask plus its nonzero values.
"""
from __future__ import annotations

from stages.core.errors import PipelineError

PATTERNS = ("unstructured", "2:4")


def linears(model) -> dict:
    """{name: nn.Linear} of the decoder layers (attention and MLP projections)."""
    import torch

    return {n: m for n, m in model.model.layers.named_modules() if isinstance(m, torch.nn.Linear)}


def check(model, pattern: str) -> None:
    """2:4 needs every pruned layer's input width divisible by 4: a clear error, before work."""
    if pattern not in PATTERNS:
        raise PipelineError(f"prune.pattern must be one of {PATTERNS}, got {pattern!r}")
    if pattern == "2:4":
        bad = [n for n, m in linears(model).items() if m.in_features % 4]
        if bad:
            raise PipelineError(f"2:4 pruning needs input widths divisible by 4; {bad[0]} has "
                                f"{linears(model)[bad[0]].in_features} (and {len(bad) - 1} more)")


def mask_2_4(weight):
    """Keep the 2 largest |w| of every 4 consecutive inputs of each row."""
    import torch

    groups = weight.abs().reshape(weight.shape[0], -1, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(weight.shape)


def prune(model, sparsity: float, pattern: str) -> float:
    """Prune in place (masks made permanent); returns the zero fraction of the pruned weights."""
    import torch
    from torch.nn.utils import prune as P

    check(model, pattern)
    if not 0 <= sparsity < 1:
        raise PipelineError(f"prune.sparsity must be in [0, 1), got {sparsity}")
    zeros = total = 0
    for m in linears(model).values():
        if pattern == "2:4":
            P.custom_from_mask(m, "weight", mask_2_4(m.weight.detach()))
        else:
            P.l1_unstructured(m, "weight", amount=sparsity)
        P.remove(m, "weight")   # weight = weight_orig * mask, a plain parameter again
        with torch.no_grad():
            zeros, total = zeros + int((m.weight == 0).sum()), total + m.weight.numel()
    return zeros / total


def sparsity(model) -> float:
    """The zero fraction of the decoder linear weights (0 for a dense model)."""
    ws = [m.weight for m in linears(model).values()]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def masks(model) -> dict:
    """{name: weight != 0} of the decoder linears, to keep a pruned model's zeros in training."""
    return {n: m.weight.detach() != 0 for n, m in linears(model).items()}


def sparse_bytes(model) -> int:
    """Bytes of the model with each decoder linear stored as a bitmask (1 bit per weight) plus
    its nonzero values, every other tensor dense (the tied embedding counted once)."""
    lin = {id(m.weight) for m in linears(model).values()}
    seen, total = set(), 0
    for p in model.parameters():  # parameters() yields a tied tensor once
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in lin:
            total += (p.numel() + 7) // 8 + int((p != 0).sum()) * p.element_size()
        else:
            total += p.numel() * p.element_size()
    return total
