"""Wanda (Sun et al., 2023, "A Simple and Effective Pruning Approach for Large Language
Models"): one-shot pruning of every decoder linear by the score |W_ij| * ||X_j||_2, the weight's
magnitude times the norm of its input feature over every calibration token. Each output row
drops its lowest-scoring `sparsity` fraction (2:4: the 2 lowest of every 4 consecutive inputs).
No weight update; the output is dense float32 with zeros.

Hand-written after the reference code (github.com/locuslab/wanda, `prune_wanda`): the
maintained implementation, llm-compressor 0.14's WandaPruningModifier, requires transformers
<= 5.17 (pinned: 5.23). As the reference, layer by layer: a layer's statistics come from the
calibration passages as the pruned layers before it hand them on. The same loop is in
sparsegpt.py: a module both imported would join every lm_compress stage's deps (dvc.yaml)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.methods import prune as PR
from stages.methods.gptq import tokenized
from stages.methods.lm.base import LmMethod
from stages.runtimes.lm.base import Knobs


class WandaKnobs(Knobs):
    sparsity: float = Field(0.5, ge=0, lt=1)     # unstructured: fraction of each output row's weights zeroed
    pattern: Literal["unstructured", "2:4"] = "unstructured"
    calib_size: int = Field(128, ge=1)           # calibration passages (never evaluated ones)
    calib_seq_len: int = Field(128, ge=8)        # tokens per passage (its first)
    threads: int = Field(1, ge=1)                # torch threads: fixed, the float sums (so the mask) depend on it
    seed: int = 0                                # calibration draw


class SumSquares:
    """Per input feature, the sum of its squares over the calibration tokens (||X_j||^2)."""

    def __init__(self, linear):
        import torch
        self.value = torch.zeros(linear.in_features, dtype=torch.float64)

    def add(self, x) -> None:
        self.value += x.detach().reshape(-1, x.shape[-1]).double().pow(2).sum(0)


def mask(weight, sum_squares, sparsity: float, pattern: str):
    """True where Wanda prunes: per output row, the lowest |W| * ||X_j|| (stable sort, as the
    reference code), or the 2 lowest of every 4 consecutive inputs."""
    import torch
    score = weight.detach().abs().double() * sum_squares.sqrt()[None, :]
    if pattern == "2:4":
        return ~PR.mask_2_4(score)
    low = torch.sort(score, dim=-1, stable=True).indices[:, :int(weight.shape[1] * sparsity)]
    return torch.zeros_like(score, dtype=torch.bool).scatter_(1, low, True)


def prune_linear(linear, stat: SumSquares, sparsity: float, pattern: str) -> None:
    import torch
    with torch.no_grad():
        linear.weight[mask(linear.weight, stat.value, sparsity, pattern)] = 0


def layer_by_layer(model, calib: list[dict], make_stat, prune) -> None:
    """As the reference code: the passages' hidden states enter the first decoder layer, then
    each layer in turn feeds its linears' input rows to their statistics (`make_stat(linear)`),
    has its linears pruned (`prune(linear, stat)`), and hands its pruned outputs to the next.
    The keyword arguments the model passes each layer (attention masks, rotary embeddings; per
    layer where an architecture alternates them) depend on the tokens only, so one dense
    forward pass records them."""
    import torch
    layers = model.model.layers
    hidden, kwargs = [], [[] for _ in layers]

    def record(i):
        def pre(module, args, kw):
            kwargs[i].append({k: v for k, v in kw.items() if k != "hidden_states"})
            if i == 0:
                hidden.append(args[0] if args else kw["hidden_states"])
        return pre
    hooks = [layer.register_forward_pre_hook(record(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            for ex in calib:
                model(input_ids=torch.tensor(ex["input_ids"]), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    for i, layer in enumerate(layers):
        linears = {n: m for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
        stats = {n: make_stat(m) for n, m in linears.items()}
        hooks = [m.register_forward_hook(lambda mod, inp, out, s=stats[n]: s.add(inp[0]))
                 for n, m in linears.items()]
        try:
            with torch.no_grad():
                for h, kw in zip(hidden, kwargs[i]):
                    layer(h, **kw)
        finally:
            for h in hooks:
                h.remove()
        for n, m in linears.items():
            prune(m, stats[n])
        with torch.no_grad():   # some transformers versions return a tuple
            hidden = [out[0] if isinstance(out, tuple) else out
                      for out in (layer(h, **kw) for h, kw in zip(hidden, kwargs[i]))]


class Wanda(LmMethod):
    name = "wanda"
    knobs = WandaKnobs
    needs_calibration = True

    def _apply(self, source: Path, out: Path, knobs: dict, calibration, teacher) -> dict:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(knobs["threads"])
        tok, calib = tokenized(source, calibration, knobs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
        PR.check(model, knobs["pattern"])
        sparsity = 0.5 if knobs["pattern"] == "2:4" else knobs["sparsity"]
        layer_by_layer(model, calib, SumSquares, lambda m, s: prune_linear(m, s, sparsity, knobs["pattern"]))
        model.save_pretrained(out)
        tok.save_pretrained(out)
        return {"sparsity": round(PR.sparsity(model), 6), "pattern": knobs["pattern"], "calib_passages": len(calib)}


METHOD = Wanda()
