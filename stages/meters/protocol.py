"""The LM speed protocol the runtime adapters share (llama.cpp, OpenVINO): prefill and decode
timed as medians of speed_repeats runs after one warm-up, each run one energy window when a
meter is given. The adapters supply the two timed functions (each returns its seconds)."""
from __future__ import annotations

import statistics


def _median(fn, units: int, repeats: int, meter):
    """(median seconds, energy figure or None) of fn() over `repeats` runs after a warm-up."""
    if meter is None:
        fn()  # warm-up
        return statistics.median([fn() for _ in range(repeats)]), None
    times = []
    _, _, energy = meter.repeats(lambda: times.append(fn()), repeats, units, "token")
    return statistics.median(times[1:]), energy   # times[0]: the warm-up


def measure(prefill_once, decode_all, n_prefill: int, n_decode: int, repeats: int, meter=None) -> dict:
    """decode/prefill tokens/s (and, with a meter, their energy figures), prefill first."""
    t_prefill, e_prefill = _median(prefill_once, n_prefill, repeats, meter)
    t_decode, e_decode = _median(decode_all, n_decode, repeats, meter)
    out = {"decode_tokens_per_s": n_decode / t_decode, "prefill_tokens_per_s": n_prefill / t_prefill}
    return {**out, "energy_decode": e_decode, "energy_prefill": e_prefill} if meter else out
