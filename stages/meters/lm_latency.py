"""The one LM latency meter every runtime is timed by (through its Session, never by itself),
with the definitions optimum-benchmark and MLPerf use:

- TTFT, time to first token: an empty cache, then the prompt's forward and the choice of the
  first new token (greedy);
- TPOT, time per output token: each later decode step alone (one token in, argmax out), as
  a median and a p90 over the steps of every timed run;
- end-to-end rate: new tokens / (TTFT + every step), the rate a user of generate() sees;
- prefill rate: prompt tokens / one forward over prefill_tokens from an empty cache.

Medians over `repeats` runs after one warm-up, with one energy window per run when a meter
is given (energy per decoded token covers the whole run, the prompt's forward included).
"""
from __future__ import annotations

import statistics
import time

import numpy as np

PROMPT_TOKENS = 32


def _decode(session, prompt: list[int], n: int) -> tuple[float, list[float]]:
    """(TTFT, [seconds of each later step]) of one greedy run of n new tokens."""
    t0 = time.perf_counter()
    session.reset(len(prompt) + n)
    token = int(np.argmax(session.step(prompt)))
    ttft, steps = time.perf_counter() - t0, []
    for _ in range(n - 1):
        t = time.perf_counter()
        token = int(np.argmax(session.step([token])))
        steps.append(time.perf_counter() - t)
    return ttft, steps


def measure(session, ids: list[int], prefill_tokens: int, decode_tokens: int, repeats: int,
            meter=None) -> dict:
    """The figures above for one opened Session, from a token stream `ids` tokenized before."""
    if decode_tokens < 2 or len(ids) < max(prefill_tokens, PROMPT_TOKENS):
        raise ValueError("need >= 2 decode tokens and a token stream as long as the prompts")
    prompt, prefill = ids[:PROMPT_TOKENS], ids[:prefill_tokens]
    runs: list[tuple[float, list[float]]] = []

    def prefill_once() -> float:
        session.reset(len(prefill) + 1)
        t0 = time.perf_counter()
        session.step(prefill)
        return time.perf_counter() - t0

    prefills: list[float] = []
    if meter is None:
        prefill_once(), _decode(session, prompt, decode_tokens)   # warm-ups
        prefills = [prefill_once() for _ in range(repeats)]
        runs = [_decode(session, prompt, decode_tokens) for _ in range(repeats)]
        energy = {}
    else:
        _, _, e_prefill = meter.repeats(lambda: prefills.append(prefill_once()), repeats,
                                        len(prefill), "token")
        _, _, e_decode = meter.repeats(lambda: runs.append(_decode(session, prompt, decode_tokens)),
                                       repeats, decode_tokens, "token")
        prefills, runs = prefills[-repeats:], runs[-repeats:]   # the warm-up calls dropped
        energy = {"energy_prefill": e_prefill, "energy_decode": e_decode}
    steps = [s for _, run in runs for s in run]
    totals = [ttft + sum(run) for ttft, run in runs]
    return {"ttft_ms": 1e3 * statistics.median(ttft for ttft, _ in runs),
            "tpot_ms": 1e3 * statistics.median(steps),
            "tpot_p90_ms": 1e3 * float(np.percentile(steps, 90)),
            "decode_tokens_per_s": 1e3 / (1e3 * statistics.median(steps)),
            "e2e_tokens_per_s": decode_tokens / statistics.median(totals),
            "prefill_tokens_per_s": len(prefill) / statistics.median(prefills),
            "prefill_tokens": len(prefill), "decode_tokens": decode_tokens, **energy}
