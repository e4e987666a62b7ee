"""Energy of measured windows: joules, seconds, average power and the method, gross and net of
the idle power measured just before (stages/meters/energy_sources.py has the counters).

`open_meter(cfg, device)` resolves energy.method at stage start, before heavy work: `auto`
takes `nvml` when the stage runs on cuda, `rapl` when its counters are readable, else
`estimate`; `nvml` with no GPU or `rapl` with no readable counter is a one-line error.
A series of windows gives, per unit (image, token, example, run): the median over windows,
its p10 and p90, and the median net of idle. For `estimate` the idle power is ~0 by
construction: a sleeping process uses no CPU time.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from stages.core.errors import PipelineError
from stages.meters import energy_sources as S
from stages.meters.cpu_power import watts_per_core
from stages.meters.machine import cpu_name
from stages.meters.timing import repeat_ms

PARAMS = ("energy.method", "energy.idle_s", "energy.tdp_w", "energy.watts_per_core")
METHODS = ("nvml", "nvml-power", "rapl", "estimate")


def resolve(method: str, device: str = "cpu", rapl_root=S.POWERCAP) -> str:
    if method == "auto":
        return "nvml" if device == "cuda" else "rapl" if S.rapl_readable(rapl_root) else "estimate"
    return method


def open_source(cfg: dict, device: str = "cpu", rapl_root=S.POWERCAP):
    method = resolve(cfg["method"], device, rapl_root)
    if method == "nvml":
        return S.Nvml.open()
    if method == "rapl":
        return S.Rapl(rapl_root)
    if method == "estimate":
        return S.Estimate(*watts_per_core(cfg, cpu_name()))
    raise PipelineError(f"unknown energy.method {method!r}; expected auto, nvml, rapl or estimate")


def figure(source, unit: str, units: list[float], joules: list[float], seconds: list[float],
           idle_w: float) -> dict:
    """Per-unit energy of a series of windows (the fields of schema.metrics.Energy)."""
    per = [j / u for j, u in zip(joules, units)]
    net = [(j - idle_w * s) / u for j, u, s in zip(joules, units, seconds)]
    total_j, total_s = float(sum(joules)), float(sum(seconds))
    return {"method": source.name, "basis": source.basis, "unit": unit, "windows": len(per),
            "units": float(sum(units)), "joules": total_j, "seconds": total_s,
            "power_w": total_j / total_s if total_s > 0 else 0.0, "idle_power_w": idle_w,
            "j_per_unit": float(statistics.median(per)),
            "j_per_unit_p10": float(np.percentile(per, 10)),
            "j_per_unit_p90": float(np.percentile(per, 90)),
            "net_j_per_unit": float(statistics.median(net))}


@dataclass
class Meter:
    source: object
    idle_s: float

    @property
    def method(self) -> str:
        return self.source.name

    def idle_power(self) -> float:
        """Average W over idle_s of sleep (0 when idle_s is 0)."""
        if self.idle_s <= 0:
            return 0.0
        j0, t0 = self.source.read(), time.perf_counter()
        time.sleep(self.idle_s)
        j1, t1 = self.source.read(), time.perf_counter()
        return max(0.0, (j1 - j0) / (t1 - t0))

    def repeats(self, fn, repeats: int, units: float, unit: str, sync=lambda: None,
                warmup: int = 1):
        """fn() `warmup` times, the idle window, then `repeats` windows (wall time as the speed
        timers take it: sync() before and after). A source with a coarse counter (min_window_s,
        NVML) gets windows of that length at least: fn() runs as often as one more warm call says
        it takes to fill one, and on while it is shorter (a lone 34 ms prefill sees 0-1 steps).
        Returns (last result, [seconds per fn() call, one per window], energy figure)."""
        for _ in range(warmup):
            fn()
        calls, min_s = 1, getattr(self.source, "min_window_s", 0.0)
        if min_s and warmup:   # one warm call sizes the window (a first call can be a cold start)
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            calls = max(1, math.ceil(min_s / max(time.perf_counter() - t0, 1e-9)))
        else:
            min_s = 0.0        # no warm-up (once()): exactly one call a window
        idle = self.idle_power()
        out, times, joules, done = None, [], [], []
        for _ in range(repeats):
            sync()
            j0, t0 = self.source.read(), time.perf_counter()
            n = 0   # calls, and more while the window is short of min_s (calls faster than sized)
            while n < calls or time.perf_counter() - t0 < min_s:
                out, n = fn(), n + 1
            sync()
            t1 = time.perf_counter()
            joules.append(self.source.read() - j0)
            times.append(t1 - t0)
            done.append(n)
        fig = figure(self.source, unit, [units * n for n in done], joules, times, idle)
        return out, [t / n for t, n in zip(times, done)], fig

    def once(self, fn, units: float, unit: str, sync=lambda: None):
        """One window over fn() (no warm-up): (result, energy figure)."""
        out, _, fig = self.repeats(fn, 1, units, unit, sync, warmup=0)
        return out, fig

    def blocks(self, fn, warmup: int, runs: int, unit: str, blocks: int = 5):
        """Milliseconds of `runs` calls after `warmup` (as meters.timing.repeat_ms), with the
        energy read per block of consecutive calls: calls too short for a counter's update
        interval are metered in blocks, never one by one. Returns (ms list, energy figure)."""
        for _ in range(warmup):
            fn()
        idle = self.idle_power()
        n = max(1, min(blocks, runs))
        sizes = [runs // n + (i < runs % n) for i in range(n)]
        ms, joules, seconds = [], [], []
        for size in sizes:
            j0, w0 = self.source.read(), time.perf_counter()
            ms += repeat_ms(fn, 0, size)
            seconds.append(time.perf_counter() - w0)
            joules.append(self.source.read() - j0)
        return ms, figure(self.source, unit, [float(s) for s in sizes], joules, seconds, idle)

    def close(self) -> None:
        self.source.close()


def open_meter(cfg: dict, device: str = "cpu", rapl_root=S.POWERCAP) -> Meter:
    """The meter of a stage, from its energy params; errors before any heavy work. Every key
    of PARAMS is read, whichever method they resolve to (the pipeline test traces reads)."""
    cfg = {key.split(".")[1]: cfg[key.split(".")[1]] for key in PARAMS}
    return Meter(open_source(cfg, device, rapl_root), cfg["idle_s"])


if __name__ == "__main__":  # a check on any machine: python -m stages.meters.energy [cuda]
    import sys
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    meter = open_meter({"method": "auto", "idle_s": 2.0, "tdp_w": None, "watts_per_core": None}, device)
    try:
        import torch
        x = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) if device == "cuda" \
            else torch.randn(1024, 1024)
        work, sync = (lambda: [x @ x for _ in range(50)]), (torch.cuda.synchronize if device == "cuda" else lambda: None)
    except ImportError:
        work, sync = (lambda: sum(i * i for i in range(3_000_000))), (lambda: None)
    _, secs, fig = meter.repeats(work, 3, 1, "run", sync)
    meter.close()
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in fig.items()})
