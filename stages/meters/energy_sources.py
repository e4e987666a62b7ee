"""Energy counters behind stages/meters/energy.py. Each source has `name`, `basis` (how its
joules are obtained), `read()` -> cumulative joules since an arbitrary origin, and `close()`.

- `rapl`: /sys/class/powercap/intel-rapl*/energy_uj (Intel, and AMD Zen on recent kernels):
  every package domain plus DRAM subdomains where present; each counter's wrap-around at
  max_energy_range_uj is handled. The sysfs root is injectable (tests use a fake tree).
- `nvml`: the NVIDIA driver's energy counter, nvmlDeviceGetTotalEnergyConsumption (mJ);
  `nvml-power` where that counter is unsupported: nvmlDeviceGetPowerUsage (mW) sampled in a
  thread and integrated (trapezoids).
- `estimate`: process CPU time (user + system of every thread, time.process_time, plus that
  of finished child processes, e.g. the ONNX Runtime GenAI builder) times a power per core
  (stages/meters/cpu_power.py). Not a measurement: proportional to CPU time.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from stages.core.errors import PipelineError
from stages.meters.cpu_power import Estimate  # noqa: F401 (the `estimate` source, re-exported)

POWERCAP = Path("/sys/class/powercap")


def rapl_domains(root: Path = POWERCAP) -> list[Path]:
    """Package domains (intel-rapl:N) and their DRAM subdomains (intel-rapl:N:M named dram);
    core/uncore subdomains are inside the package figure and are not added again."""
    out = []
    for d in sorted(Path(root).glob("intel-rapl:*")):
        if re.fullmatch(r"intel-rapl:\d+", d.name):
            out.append(d)
            out += [s for s in sorted(d.glob("intel-rapl:*:*"))
                    if (s / "name").is_file() and (s / "name").read_text().strip() == "dram"]
    return list(dict.fromkeys(out))


def rapl_readable(root: Path = POWERCAP) -> bool:
    try:
        return bool(domains := rapl_domains(root)) and all(
            int((d / "energy_uj").read_text()) >= 0 for d in domains)
    except (OSError, ValueError):
        return False


class Rapl:
    name = "rapl"

    def __init__(self, root: Path = POWERCAP):
        self.domains = rapl_domains(root)
        if not rapl_readable(root):
            raise PipelineError(f"energy.method=rapl but no readable {root}/intel-rapl*/energy_uj "
                                "(absent, or root-only: chmod a+r, or use energy.method=estimate)")
        self.basis = "RAPL " + "+".join((d / "name").read_text().strip() for d in self.domains)
        self.ranges = [int((d / "max_energy_range_uj").read_text()) for d in self.domains]
        self.last = [self._raw(d) for d in self.domains]
        self.total_uj = 0

    @staticmethod
    def _raw(d: Path) -> int:
        return int((d / "energy_uj").read_text())

    def read(self) -> float:
        for i, d in enumerate(self.domains):
            now = self._raw(d)
            delta = now - self.last[i]
            if delta < 0:  # the counter wrapped at max_energy_range_uj
                delta += self.ranges[i] + 1
            self.total_uj += delta
            self.last[i] = now
        return self.total_uj / 1e6

    def close(self) -> None:
        pass


def nvml_handle(index: int = 0):
    """(pynvml, handle) or a one-line PipelineError when there is no NVIDIA GPU."""
    try:
        import pynvml
        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() <= index:
            raise PipelineError(f"energy.method=nvml but GPU {index} is not present")
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
    except PipelineError:
        raise
    except Exception as exc:  # ImportError, NVMLError (no driver / no GPU)
        raise PipelineError(f"energy.method=nvml but NVML is unavailable (no NVIDIA GPU or "
                            f"driver?): {type(exc).__name__}: {exc}") from None


class Nvml:
    """The driver's energy counter; Nvml.open falls back to NvmlPower where it is unsupported."""
    name = "nvml"
    # The counter steps about every 100 ms on the H200 used here (per-window joules came in
    # ~12.5 J steps at ~125 W): windows of >= 1 s keep one step within ~10 % of the figure.
    min_window_s = 1.0

    def __init__(self, nv, handle):
        self.nv, self.handle = nv, handle
        self.basis = "nvmlDeviceGetTotalEnergyConsumption (mJ counter)"
        self.read()

    @classmethod
    def open(cls, index: int = 0, interval_s: float = 0.01):
        nv, handle = nvml_handle(index)
        try:
            return cls(nv, handle)
        except Exception:  # NVMLError_NotSupported on GPUs older than Volta, some vGPUs
            return NvmlPower(nv, handle, interval_s)

    def read(self) -> float:
        return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3

    def close(self) -> None:
        pass


class NvmlPower:
    """nvmlDeviceGetPowerUsage (mW) sampled every interval_s in a thread, integrated."""
    name = "nvml-power"

    def __init__(self, nv, handle, interval_s: float = 0.01):
        self.nv, self.handle, self.interval = nv, handle, interval_s
        self.basis = f"nvmlDeviceGetPowerUsage sampled every {interval_s * 1e3:g} ms, integrated"
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.t, self.w, self.joules = time.perf_counter(), self._watts(), 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _watts(self) -> float:
        return self.nv.nvmlDeviceGetPowerUsage(self.handle) / 1e3

    def _sample(self) -> None:
        with self.lock:
            t, w = time.perf_counter(), self._watts()
            self.joules += (w + self.w) / 2 * (t - self.t)
            self.t, self.w = t, w

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self._sample()

    def read(self) -> float:
        self._sample()
        return self.joules

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
