"""SparseGPT (Frantar & Alistarh, 2023, "SparseGPT: Massive Language Models Can Be Accurately
Pruned in One-Shot"): one-shot pruning of every decoder linear with the OBS weight update. With
H = 2 X^T X / N over the calibration tokens (+ damp_percent of its mean diagonal), columns are
visited in blocks of `block_size`; a block's mask drops the weights of least w^2 / [U]_jj^2 (U:
the upper Cholesky factor of H^-1; unstructured: over the whole block, 2:4: per 4 columns on
the updated weights), and each pruned column's error is spread over the columns not yet
visited, as GPTQ does for rounding. The output is dense float32 with zeros.

Hand-written after the reference code (github.com/IST-DASLab/sparsegpt, `fasterprune`; the
update in float64): the maintained implementation, llm-compressor 0.14's SparseGPTModifier, requires
transformers <= 5.17 (pinned: 5.23). One change: the unstructured mask takes exactly the k
lowest scores (the reference's `<=` threshold takes one more). Layer by layer, as the
reference: wanda.py's loop, repeated here because a module both imported would join every
lm_compress stage's deps (dvc.yaml)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.methods import prune as PR
from stages.methods.gptq import tokenized
from stages.methods.lm.base import LmMethod
from stages.runtimes.lm.base import Knobs


class SparseGptKnobs(Knobs):
    sparsity: float = Field(0.5, ge=0, lt=1)     # unstructured: fraction of each column block's weights zeroed
    pattern: Literal["unstructured", "2:4"] = "unstructured"
    calib_size: int = Field(128, ge=1)           # calibration passages (never evaluated ones)
    calib_seq_len: int = Field(128, ge=8)        # tokens per passage (its first)
    block_size: int = Field(128, ge=4, multiple_of=4)   # columns per mask-selection block (the paper's B_s)
    damp_percent: float = Field(0.01, gt=0, lt=1)   # Hessian dampening, fraction of its mean diagonal
    threads: int = Field(1, ge=1)                # torch threads: fixed, the float sums (so the weights) depend on it
    seed: int = 0                                # calibration draw


class Hessian:
    """H = 2/N sum of x x^T over the N calibration tokens (the reference's running mean, in
    float32 as the reference; the pruning itself runs in float64)."""

    def __init__(self, linear):
        import torch
        self.H = torch.zeros(linear.in_features, linear.in_features, dtype=torch.float32)
        self.n = 0

    def add(self, x) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        self.H *= self.n / (self.n + len(x))
        self.n += len(x)
        x = (2 / self.n) ** 0.5 * x
        self.H += x.T @ x


def prune_linear(linear, stat: Hessian, sparsity: float, pattern: str, block_size: int = 128,
                 damp_percent: float = 0.01) -> None:
    """The reference's fasterprune on one linear, in place."""
    import torch
    W = linear.weight.detach().double().clone()
    H = stat.H.double()
    dead = torch.diag(H) == 0            # inputs never active: their weights cannot matter
    H[dead, dead] = 1
    W[:, dead] = 0
    cols = W.shape[1]
    H[range(cols), range(cols)] += damp_percent * torch.mean(torch.diag(H))
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Q1, Err1, d = torch.zeros_like(W1), torch.zeros_like(W1), torch.diag(Hinv1)
        mask1 = torch.zeros_like(W1, dtype=torch.bool)
        if pattern != "2:4":
            score = (W1 ** 2 / d[None, :] ** 2).flatten()
            mask1.view(-1)[torch.sort(score, stable=True).indices[:int(score.numel() * sparsity)]] = True
        for i in range(i2 - i1):
            if pattern == "2:4" and i % 4 == 0:   # the next 4 columns' mask, on the updated weights
                mask1[:, i:i + 4] = ~PR.mask_2_4(W1[:, i:i + 4] ** 2 / d[None, i:i + 4] ** 2)
            w = W1[:, i]
            q = torch.where(mask1[:, i], torch.zeros_like(w), w)
            Q1[:, i] = q
            err = (w - q) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] @ Hinv1[i, i:][None, :]
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    with torch.no_grad():
        linear.weight.copy_(W.to(linear.weight.dtype))


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


class SparseGpt(LmMethod):
    name = "sparsegpt"
    knobs = SparseGptKnobs
    needs_calibration = True

    def _apply(self, source: Path, out: Path, knobs: dict, calibration, teacher) -> dict:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(knobs["threads"])
        tok, calib = tokenized(source, calibration, knobs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
        PR.check(model, knobs["pattern"])
        sparsity = 0.5 if knobs["pattern"] == "2:4" else knobs["sparsity"]
        layer_by_layer(model, calib, Hessian, lambda m, s: prune_linear(
            m, s, sparsity, knobs["pattern"], knobs["block_size"], knobs["damp_percent"]))
        model.save_pretrained(out)
        tok.save_pretrained(out)
        return {"sparsity": round(PR.sparsity(model), 6), "pattern": knobs["pattern"], "calib_passages": len(calib)}


METHOD = SparseGpt()
