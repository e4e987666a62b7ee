"""The shared LM latency meter on a virtual clock: TTFT, TPOT and the rates follow their
definitions (stages/meters/lm_latency.py), whatever the session."""
from __future__ import annotations

import numpy as np
import pytest

from stages.meters import lm_latency


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeSession:
    """Costs 1 ms per token in the cache plus 10 ms per call, on the virtual clock; greedy picks token 7."""
    def __init__(self, clock):
        self.clock, self.cached, self.calls = clock, 0, 0

    def reset(self, max_tokens=512):
        self.cached = 0

    def step(self, ids):
        self.cached += len(ids)
        self.clock.t += 0.010 + 0.001 * len(ids)
        self.calls += 1
        out = np.zeros(16, dtype=np.float32)
        out[7] = 1
        return out


def test_ttft_tpot_and_rates_follow_their_definitions(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(lm_latency.time, "perf_counter", clock)
    session = FakeSession(clock)
    out = lm_latency.measure(session, list(range(300)), prefill_tokens=256, decode_tokens=5, repeats=3)
    assert out["ttft_ms"] == pytest.approx(10 + 32)          # the 32-token prompt's forward
    assert out["tpot_ms"] == pytest.approx(11) and out["tpot_p90_ms"] == pytest.approx(11)
    assert out["decode_tokens_per_s"] == pytest.approx(1000 / 11)
    assert out["e2e_tokens_per_s"] == pytest.approx(5 / (0.042 + 4 * 0.011))
    assert out["prefill_tokens_per_s"] == pytest.approx(256 / 0.266)
    assert session.calls == 4 * (1 + 1 + 4)                   # warm-up + 3 runs, each: prefill, prompt, 4 steps


def test_too_short_a_stream_is_refused():
    with pytest.raises(ValueError):
        lm_latency.measure(FakeSession(Clock()), list(range(10)), 256, 5, 1)


class Joules:
    """An energy source of 100 W on the virtual clock."""
    name, basis, min_window_s = "fake", "test", 0.0

    def __init__(self, clock):
        self.clock = clock

    def read(self) -> float:
        return 100.0 * self.clock.t

    def close(self) -> None:
        pass


def test_with_a_meter_energy_per_token_covers_each_run_and_warm_ups_are_dropped(monkeypatch):
    from stages.meters.energy import Meter

    clock = Clock()
    monkeypatch.setattr(lm_latency.time, "perf_counter", clock)
    monkeypatch.setattr("stages.meters.energy.time.perf_counter", clock)
    out = lm_latency.measure(FakeSession(clock), list(range(300)), 256, 5, 3, Meter(Joules(clock), 0.0))
    assert out["ttft_ms"] == pytest.approx(42) and out["tpot_ms"] == pytest.approx(11)
    # 100 W x (prompt 42 ms + 4 steps of 11 ms) over 5 tokens; 100 W x 266 ms over 256 prompt tokens
    assert out["energy_decode"]["j_per_unit"] == pytest.approx(100 * 0.086 / 5)
    assert out["energy_prefill"]["j_per_unit"] == pytest.approx(100 * 0.266 / 256)
    assert out["energy_decode"]["windows"] == 3
