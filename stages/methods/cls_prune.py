"""Pruning a BERT-family classifier, then recovery fine-tuning (stages/methods/cls_train.py).

- `prune_structured`: removes whole attention heads and FFN neurons (the same number in every
  layer), so the matrices shrink and the model is smaller and faster on every runtime.
  Importance is weight magnitude: a head by the L2 norm of its slice of the attention output
  projection, an FFN neuron by the product of the norms of its input row and output column
  (magnitude criteria as in Michel et al. 2019 / Hoefler et al. 2021's survey; cheap, no
  gradients). transformers 5 dropped `prune_heads`, so heads are cut with its
  `prune_linear_layer` (stages/models/encoder.py, which saves and rebuilds the kept shapes).
- `prune_magnitude`: zeroes the smallest-magnitude fraction of every encoder linear's
  weights (torch.nn.utils.prune, L1 unstructured); recovery keeps the zeros (the mask is part of
  the forward). Dense kernels and dense files: it saves neither time nor disk, as the report says.
"""
from __future__ import annotations

from stages.models.encoder import layers, shrink


def prune_structured(model, heads_frac: float, ffn_frac: float) -> dict:
    """Remove the least important heads and FFN neurons; returns the kept shapes."""
    heads, ffn = {}, {}
    for i, layer in enumerate(layers(model)):
        att = layer.attention
        d = att.self.attention_head_size
        w = att.output.dense.weight.detach()
        n = w.shape[1] // d
        norms = w.view(w.shape[0], n, d).norm(dim=(0, 2))
        heads[i] = norms.argsort()[:round(heads_frac * n)].tolist()
        inner, outer = layer.intermediate.dense.weight.detach(), layer.output.dense.weight.detach()
        score = inner.norm(dim=1) * outer.norm(dim=0)
        m = score.numel()
        ffn[i] = score.argsort(descending=True)[:m - round(ffn_frac * m)].tolist()
    shrink(model, heads, ffn)
    return {"heads_removed": sum(map(len, heads.values())), "ffn_kept": len(ffn[0]) if ffn else None}


def prune_magnitude(model, sparsity: float) -> list:
    """L1-unstructured masks on every encoder linear (the masks stay until `finalize`)."""
    import torch
    from torch.nn.utils import prune

    linears = [m for m in model.base_model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    for m in linears:
        prune.l1_unstructured(m, "weight", amount=sparsity)
    return linears


def finalize(linears: list) -> float:
    """Bake the masks into the weights; returns the zero fraction of those weights."""
    from torch.nn.utils import prune

    zeros = total = 0
    for m in linears:
        prune.remove(m, "weight")
        zeros += int((m.weight == 0).sum())
        total += m.weight.numel()
    return zeros / total
