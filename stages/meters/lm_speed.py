"""Language-model speed: decode and prefill tokens/s, medians over repeats after a warm-up,
and their energy per token in the same windows (one window per timed repeat).

Tokenization happens before any timer starts, so neither figure includes it.
"""
from __future__ import annotations

import statistics

from stages.meters.energy import Meter


def speeds(model, tok, texts: list[str], cfg: dict, meter: Meter) -> tuple[dict, dict]:
    """Prefill: one forward over a fixed prefill_tokens prompt (tokenized before timing).
    Decode: batch 1, greedy, exactly decode_tokens new tokens after a 32-token prompt.
    Returns (speeds, {"energy_decode": J per decoded token, "energy_prefill": per prompt token})."""
    import torch

    ids = tok("\n\n".join(texts[:200]), add_special_tokens=False, return_tensors="pt").input_ids
    prefill = ids[:, :cfg["prefill_tokens"]].to(model.device)
    prompt = ids[:, :32].to(model.device)
    n = cfg["decode_tokens"]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)

    def decode():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=n, min_new_tokens=n, pad_token_id=pad)
        assert out.shape[1] - prompt.shape[1] == n

    reps, p = cfg["speed_repeats"], prefill.shape[1]
    _, t_prefill, e_prefill = meter.repeats(lambda: model(input_ids=prefill, use_cache=False),
                                            reps, p, "token", sync)
    _, t_decode, e_decode = meter.repeats(decode, reps, n, "token", sync)
    return ({"decode_tokens_per_s": n / statistics.median(t_decode),
             "prefill_tokens_per_s": p / statistics.median(t_prefill)},
            {"energy_decode": e_decode, "energy_prefill": e_prefill})
