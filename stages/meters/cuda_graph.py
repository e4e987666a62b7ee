"""Batch-1 greedy decode with the step captured once as a CUDA graph (as gpt-fast and vLLM
run it): a static KV cache, the one-token forward recorded with torch.cuda.graph, then one
graph replay per token. No torch.compile, so custom ops (Marlin, Triton) are captured as
launched; it removes the per-kernel launch and Python cost that bounds eager `generate` at
batch 1 (README "GPU results"). The captured step is checked against an eager step first.
"""
from __future__ import annotations

import statistics


class StaticDecoder:
    """Greedy batch-1 decode over a static KV cache with fixed-address inputs (token, position,
    mask): what a CUDA graph can capture. Runs eagerly on any device (tested on the CPU)."""

    def __init__(self, model, prompt, new_tokens: int):
        import torch
        from transformers import StaticCache

        self.model, self.prompt, dev = model, prompt, prompt.device
        length = prompt.shape[1] + new_tokens + 1
        self.cache = StaticCache(config=model.config, max_cache_len=length)
        self.tok = torch.zeros((1, 1), dtype=torch.long, device=dev)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)
        # an explicit mask over the whole static cache (1 = filled): without one, transformers
        # may drop the mask of a one-token query
        self.mask = torch.zeros((1, length), dtype=torch.long, device=dev)

    def prefill(self) -> None:
        import torch

        n = self.prompt.shape[1]
        self.cache.reset()
        self.mask.zero_()
        self.mask[:, :n] = 1
        logits = self.model(input_ids=self.prompt, past_key_values=self.cache, use_cache=True,
                            attention_mask=self.mask,
                            cache_position=torch.arange(n, device=self.prompt.device)).logits[:, -1]
        self.tok.copy_(logits.argmax(-1, keepdim=True))
        self.pos.fill_(n)

    def step(self):
        """Logits of the token at `pos` (its K/V written there); inputs stay at their addresses."""
        self.mask.index_fill_(1, self.pos, 1)
        return self.model(input_ids=self.tok, past_key_values=self.cache, cache_position=self.pos,
                          attention_mask=self.mask, position_ids=self.pos[None],
                          use_cache=True).logits[:, -1]

    def advance(self, nxt) -> None:
        self.tok.copy_(nxt)
        self.pos.add_(1)


def graph_decode(model, cfg: dict, meter, vocab: int, seed: int = 0) -> dict:
    """Tok/s of a 32-token prefill plus decode_tokens graph-replayed steps (the window that
    `generate` is timed over), median of speed_repeats, NVML J/token of the same windows."""
    import torch

    g = torch.Generator("cpu").manual_seed(seed)
    n = cfg["decode_tokens"]
    d = StaticDecoder(model, torch.randint(0, vocab, (1, 32), generator=g).cuda(), n)
    d.prefill()
    eager = d.step().clone()   # the reference, before any capture
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):   # warm-up off the default stream, as torch's docs ask
        for _ in range(2):
            d.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = d.step()
        nxt = logits.argmax(-1, keepdim=True)
    graph.replay()             # the same position again: rewrites the same K/V
    torch.cuda.synchronize()
    err = (logits.float() - eager.float()).abs().max().item()
    scale = eager.float().abs().max().item()
    if not err <= 1e-2 * max(scale, 1.0):
        again = (d.step().float() - eager.float()).abs().max().item()   # eager vs eager, for the record
        raise RuntimeError(f"graph step differs from the eager step: max |diff| {err:.3g} (scale "
                           f"{scale:.3g}; eager run twice: {again:.3g})")

    def decode():
        d.prefill()
        for _ in range(n):
            graph.replay()
            d.advance(nxt)

    _, t, e = meter.repeats(decode, cfg["speed_repeats"], n, "token", torch.cuda.synchronize, warmup=1)
    out = {"batch": 1, "cache": "graph", "tokens_per_s": n / statistics.median(t), "energy": e}
    if cfg["profile_tokens"]:   # where a replayed step's time goes: kernels, not launches now
        from stages.meters.gpu import profiled

        def replays():
            for _ in range(cfg["profile_tokens"]):
                graph.replay()
                d.advance(nxt)
        d.prefill()
        out["profile"] = profiled(replays, cfg["profile_tokens"])
    return out
