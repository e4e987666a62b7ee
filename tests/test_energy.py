"""The energy meter (stages/meters/energy.py and its sources): RAPL on a fake sysfs tree,
the CPU-time estimate, window arithmetic, NVML through a fake pynvml (and the real one on a
GPU machine: `python -m pytest tests/test_energy.py -k nvml`), break-even and carbon, params."""
from __future__ import annotations

import copy
import math
import sys
import time
import types
from pathlib import Path

import pytest

from stages.core.errors import PipelineError
from stages.meters import cpu_power, energy as E, energy_sources as S
from stages.reporting import energy as R

ROOT = Path(__file__).resolve().parents[1]
EST = {"method": "estimate", "idle_s": 0.0, "tdp_w": None, "watts_per_core": 4.0}


# ---------------------------------------------------------------- RAPL on a fake sysfs tree
def domain(path: Path, name: str, uj: int, max_uj: int = 1000_000) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


@pytest.fixture
def powercap(tmp_path) -> Path:
    root = tmp_path / "powercap"
    pkg = domain(root / "intel-rapl:0", "package-0", 999_000)
    domain(pkg / "intel-rapl:0:0", "core", 5_000)     # inside the package figure: not added
    domain(pkg / "intel-rapl:0:1", "dram", 100)
    domain(root / "intel-rapl:1", "package-1", 10)
    return root


def test_rapl_reads_packages_and_dram_and_handles_wrap_around(powercap):
    assert [d.name for d in S.rapl_domains(powercap)] == ["intel-rapl:0", "intel-rapl:0:1", "intel-rapl:1"]
    r = S.Rapl(powercap)
    assert r.read() == 0.0 and "package-0+dram+package-1" in r.basis
    (powercap / "intel-rapl:0" / "energy_uj").write_text("2000\n")  # wrapped: +1000 + 2000 + 1
    (powercap / "intel-rapl:0" / "intel-rapl:0:1" / "energy_uj").write_text("600\n")  # +500
    (powercap / "intel-rapl:0" / "intel-rapl:0:0" / "energy_uj").write_text("900000\n")  # ignored
    (powercap / "intel-rapl:1" / "energy_uj").write_text("1000010\n")  # +1,000,000
    assert r.read() == pytest.approx((1001 + 2000 + 500 + 1_000_000) / 1e6)
    assert E.resolve("auto", "cpu", powercap) == "rapl"
    assert E.open_source({**EST, "method": "auto"}, "cpu", powercap).name == "rapl"


def test_rapl_absent_or_unreadable_falls_back_or_errors(tmp_path, powercap):
    assert not S.rapl_readable(tmp_path / "none") and E.resolve("auto", "cpu", tmp_path / "none") == "estimate"
    with pytest.raises(PipelineError, match="energy.method=rapl but no readable"):
        E.open_source({**EST, "method": "rapl"}, "cpu", tmp_path / "none")
    (powercap / "intel-rapl:1" / "energy_uj").write_text("not a number")
    assert not S.rapl_readable(powercap)


# ---------------------------------------------------------------- estimate
def test_estimate_is_process_cpu_time_times_watts_per_core():
    clock = iter([10.0, 12.5, 17.5]).__next__
    src = S.Estimate(3.0, "test", clock)
    a, b, c = src.read(), src.read(), src.read()
    assert (b - a, c - b) == (pytest.approx(7.5), pytest.approx(15.0))  # 2x the CPU time, 2x J
    real = E.open_meter(EST)
    t0 = time.process_time()
    _, fig = real.once(lambda: sum(i * i for i in range(300_000)), 1, "run")
    cpu = time.process_time() - t0
    assert fig["method"] == "estimate" and 0 < fig["joules"] <= 4.0 * cpu + 1e-9
    assert fig["joules"] == pytest.approx(4.0 * cpu, rel=0.2, abs=0.02)


def test_estimate_idle_is_about_zero_and_sleep_costs_nothing():
    meter = E.Meter(S.Estimate(4.0, "test"), idle_s=0.2)
    assert meter.idle_power() < 0.5  # a sleeping process uses (almost) no CPU time


def test_watts_per_core_sources():
    cfg = {"tdp_w": None, "watts_per_core": None}
    assert cpu_power.watts_per_core({**cfg, "watts_per_core": 7.0}, "x")[0] == 7.0
    assert cpu_power.watts_per_core({**cfg, "tdp_w": 120.0}, "x", cores=8)[0] == 15.0
    w, why = cpu_power.watts_per_core(cfg, "AMD EPYC 4124P", cores=4)
    assert w == 65.0 / 4 and "codecarbon TDP 65" in why  # codecarbon's table knows it
    w, why = cpu_power.watts_per_core(cfg, "AMD EPYC", cores=2)  # this VM's name: not in it
    assert w == cpu_power.DEFAULT_W_PER_CORE == 4.0 and "not in codecarbon" in why


# ---------------------------------------------------------------- window arithmetic
class Ramp:
    """A fake counter: `watts` per perf_counter second, plus what a call adds."""
    name, basis = "rapl", "fake"

    def __init__(self, watts: float):
        self.watts, self.t0 = watts, time.perf_counter()

    def read(self) -> float:
        return self.watts * (time.perf_counter() - self.t0)

    def close(self):
        pass


def test_joules_per_token_times_tokens_is_the_window_energy():
    meter = E.Meter(Ramp(50.0), idle_s=0.05)
    _, times, fig = meter.repeats(lambda: time.sleep(0.02), 4, 64, "token")
    assert fig["windows"] == 4 and fig["units"] == 256 and len(times) == 4
    assert fig["j_per_unit_p10"] <= fig["j_per_unit"] <= fig["j_per_unit_p90"]
    assert fig["joules"] == pytest.approx(50.0 * fig["seconds"], rel=0.3)
    _, one = meter.once(lambda: time.sleep(0.05), 32, "token")
    assert one["j_per_unit"] * 32 == pytest.approx(one["joules"])
    assert one["idle_power_w"] == pytest.approx(50.0, rel=0.2)  # idle measured just before
    assert one["net_j_per_unit"] == pytest.approx((one["joules"] - one["idle_power_w"] * one["seconds"]) / 32)
    assert one["power_w"] == pytest.approx(one["joules"] / one["seconds"])


class Stepped(Ramp):
    """A counter that, like NVML's, only moves every 100 ms."""
    name, min_window_s = "nvml", 0.3

    def read(self) -> float:
        return self.watts * 0.1 * math.floor((time.perf_counter() - self.t0) / 0.1)


def virtual_calls(monkeypatch, seconds):
    """A call that "takes" seconds(i) on a virtual perf_counter (i: calls made before it), however
    loaded the machine running the test is (real sleeps made these tests fail under a busy CI run).
    Binary fractions keep rounding from moving a call count. Returns (call, list of calls made)."""
    clock, calls = [1024.0], []
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    def call():
        clock[0] += seconds(len(calls))
        calls.append(1)
    return call, calls


def test_a_coarse_counter_gets_windows_of_its_minimum_length(monkeypatch):
    call, calls = virtual_calls(monkeypatch, lambda i: 0.5 if i == 0 else 0.03125)
    meter = E.Meter(Stepped(100.0), idle_s=0.0)
    # the first call is a cold start (0.5 s): the window is sized on a warm call after it
    _, times, fig = meter.repeats(call, 3, 64, "token")
    per_window = (len(calls) - 2) // 3                        # the warm-up and the sizing call
    assert per_window == 10 and len(times) == 3              # ceil(0.3 s / 31.25 ms) calls a window
    assert times == pytest.approx([0.03125] * 3)                # seconds per call, not per window
    assert fig["units"] == 3 * 64 * per_window and fig["seconds"] == pytest.approx(3 * 10 * 0.03125)
    # each 0.3125 s window sees 3 or 4 counter steps: the figure is near the true 100 W x 1/32 s / 64
    assert fig["j_per_unit"] == pytest.approx(100.0 * 0.03125 / 64, rel=0.3)
    _, _, plain = E.Meter(Ramp(100.0), idle_s=0.0).repeats(call, 3, 64, "token")
    assert plain["units"] == 3 * 64                           # a fine counter: one call a window


def test_a_window_sized_on_a_slow_call_still_lasts_the_counters_minimum(monkeypatch):
    # the sizing call takes 1/16 s (a busy moment), the timed ones 1/64 s: five calls would
    # give 78 ms windows, which the 100 ms counter cannot resolve; the meter calls on to 0.3 s
    call, calls = virtual_calls(monkeypatch, lambda i: 0.0625 if i < 2 else 0.015625)
    _, times, fig = E.Meter(Stepped(100.0), idle_s=0.0).repeats(call, 3, 64, "token")
    assert len(calls) == 2 + 3 * 20                           # ceil(0.3 s x 64) calls a window
    assert times == pytest.approx([0.015625] * 3) and fig["units"] == 3 * 64 * 20
    assert fig["seconds"] == pytest.approx(3 * 20 * 0.015625) and fig["seconds"] >= 3 * 0.3


def test_blocks_time_every_call_and_meter_consecutive_blocks():
    calls = []
    meter = E.Meter(Ramp(10.0), idle_s=0.0)
    ms, fig = meter.blocks(lambda: calls.append(1) or time.sleep(0.002), warmup=3, runs=12, unit="image")
    assert len(calls) == 15 and len(ms) == 12 and fig["windows"] == 5 and fig["units"] == 12
    assert fig["j_per_unit"] >= 10.0 * 0.002 * 0.9          # each call sleeps >= 2 ms at 10 W
    assert fig["joules"] == pytest.approx(10.0 * fig["seconds"], rel=0.05)  # blocks cover the calls


# ---------------------------------------------------------------- NVML through a fake pynvml
def fake_pynvml(energy_supported=True, gpus=1, watts=300.0):
    nv = types.ModuleType("pynvml")
    state = {"mj": 1_000_000, "init": 0}

    class NVMLError(Exception):
        pass

    def init():
        if gpus < 0:
            raise NVMLError("Driver Not Loaded")
        state["init"] += 1

    def energy(handle):
        if not energy_supported:
            raise NVMLError("Not Supported")
        state["mj"] += 1500
        return state["mj"]

    nv.NVMLError, nv.nvmlInit, nv.nvmlShutdown = NVMLError, init, lambda: None
    nv.nvmlDeviceGetCount = lambda: gpus
    nv.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    nv.nvmlDeviceGetTotalEnergyConsumption = energy
    nv.nvmlDeviceGetPowerUsage = lambda handle: int(watts * 1000)
    return nv


def test_nvml_counter_delta_with_a_fake_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    assert E.resolve("auto", "cuda") == "nvml"
    meter = E.open_meter({**EST, "method": "auto"}, "cuda")
    _, fig = meter.once(lambda: None, 1, "run")
    assert fig["method"] == "nvml" and fig["joules"] == pytest.approx(1.5)  # one 1500 mJ step


def test_nvml_power_fallback_integrates_samples(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy_supported=False, watts=200.0))
    meter = E.open_meter({**EST, "method": "nvml"}, "cuda")
    try:
        _, fig = meter.once(lambda: time.sleep(0.2), 1, "run")
    finally:
        meter.close()
    assert fig["method"] == "nvml-power" and fig["joules"] == pytest.approx(200.0 * fig["seconds"], rel=0.05)


@pytest.mark.parametrize("nv", [fake_pynvml(gpus=0), fake_pynvml(gpus=-1), None])
def test_nvml_without_a_gpu_is_one_line_error(monkeypatch, nv):
    monkeypatch.setitem(sys.modules, "pynvml", nv)  # None: import fails
    with pytest.raises(PipelineError, match="energy.method=nvml but") as exc:
        E.open_meter({**EST, "method": "nvml"}, "cpu")
    assert "\n" not in str(exc.value)


def real_gpu() -> bool:
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


@pytest.mark.skipif(not real_gpu(), reason="no NVIDIA GPU with NVML here")
def test_nvml_real_gpu_window():
    """On a GPU machine: the project's NVML backend reads the real counter over a busy window."""
    meter = E.open_meter({**EST, "method": "nvml", "idle_s": 1.0}, "cuda")
    try:
        import torch
        x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        work, sync = (lambda: [x @ x for _ in range(200)]), torch.cuda.synchronize
    except Exception:  # no CUDA torch: still read the counter over an idle window
        work, sync = (lambda: time.sleep(2.0)), (lambda: None)
    _, times, fig = meter.repeats(work, 3, 1, "run", sync)
    meter.close()
    print(f"\nNVML: {fig}")
    assert fig["method"] in ("nvml", "nvml-power") and fig["joules"] > 0
    assert 5 < fig["power_w"] < 2000 and 0 < fig["idle_power_w"] < 2000


# ---------------------------------------------------------------- break-even and carbon
def test_break_even_arithmetic_and_never():
    assert R.break_even(100.0, reference_j=0.5, variant_j=0.3) == 500
    assert R.break_even(100.0, 0.5, 0.49) == math.ceil(100.0 / 0.01)
    assert R.break_even(100.0, 0.5, 0.5) is None     # saves nothing: never repays
    assert R.break_even(100.0, 0.5, 0.7) is None     # costs more per inference: never
    assert R.break_even(None, 0.5, 0.3) is None      # no compression energy (the reference)
    assert R.grams(3.6e6, 475.0) == 475.0            # 1 kWh at 475 gCO2e/kWh


def test_break_even_only_for_a_saving_outside_the_spread():
    """The e2e figure (one window) drives the count; the bare-invoke windows' p10-p90 decide
    whether the saving is real: overlapping spreads read "within noise", not a count."""
    def row(e2e, p10, p90, compress=None):
        return {"energy_j_per_image_e2e": e2e, "energy_j_per_image_p10_p90": [p10, p90],
                "compress_energy_j": compress}
    rows = {"float32": row(0.5, 0.28, 0.31), "int8": row(0.25, 0.23, 0.25, 250.0),
            "dynamic_int8": row(0.40, 0.27, 0.36, 240.0), "float16": row(0.6, 0.42, 0.46, 10.0)}
    R.derive(rows, "detector", 475.0)
    assert rows["int8"]["break_even_inferences"] == 1000          # 250 J / 0.25 J per image
    assert rows["dynamic_int8"]["break_even_inferences"] == R.NOISE   # p90 0.36 above 0.28
    assert rows["float16"]["break_even_inferences"] is None            # costs more: never
    assert rows["float32"]["break_even_inferences"] is None            # the reference
    del rows["int8"]["energy_j_per_image_p10_p90"]                     # no spread: not resolved
    assert R.derive(rows, "detector", 475.0)["int8"]["break_even_inferences"] == R.NOISE


def test_grid_intensity_default_country_and_unknown():
    assert cpu_power.grid_intensity(475.0, None) == (475.0, "energy.grid_gco2_per_kwh")
    fra, src = cpu_power.grid_intensity(475.0, "fra")
    assert 0 < fra < 200 and "France" in src
    with pytest.raises(PipelineError, match="grid_country='XXX'"):
        cpu_power.grid_intensity(475.0, "XXX")


# ---------------------------------------------------------------- params
def params_with(**energy) -> dict:
    import yaml  # imported here: `-k nvml` on a GPU machine needs neither yaml nor pydantic
    raw = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["energy"].update(energy)
    return raw


@pytest.mark.parametrize("change, message", [
    ({"method": "joulemeter"}, "energy.method: Input should be 'auto', 'nvml', 'rapl' or 'estimate'"),
    ({"tdp_w": -5.0}, "energy.tdp_w: Input should be greater than 0"),
    ({"watts_per_core": 0}, "energy.watts_per_core: Input should be greater than 0"),
    ({"grid_gco2_per_kwh": -1}, "energy.grid_gco2_per_kwh: Input should be greater than or equal to 0"),
    ({"idle_s": -1}, "energy.idle_s"),
    ({"grid_country": "France"}, "energy.grid_country: String should match pattern"),
    ({"metod": "auto"}, "unknown key 'energy.metod' (did you mean 'energy.method'?)"),
])
def test_bad_energy_params_are_one_line_errors(change, message):
    from stages.schema import params as P
    with pytest.raises(PipelineError) as exc:
        P.validate(params_with(**change))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_gpu_method_without_a_gpu_fails_in_check_params_and_at_stage_start(monkeypatch, tmp_path):
    import yaml
    from stages.entry import check_params, det_bench
    from stages.schema import params as P
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=0))
    with pytest.raises(PipelineError, match="energy.method=nvml but GPU 0 is not present"):
        check_params.preflight(P.validate(params_with(method="nvml")))
    with pytest.raises(PipelineError, match="grid_country='ZZZ'"):
        check_params.preflight(P.validate(params_with(grid_country="ZZZ")))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(params_with(method="nvml")))
    with pytest.raises(PipelineError, match="energy.method=nvml"):  # before any model is opened
        det_bench.main(["--variant", "int8", "--model", str(tmp_path / "missing.tflite"),
                        "--data", str(tmp_path / "missing.json"), "--metrics",
                        str(tmp_path / "m.json"), "--params", str(params)])


def test_estimate_counts_the_cpu_time_of_a_finished_child_process():
    """lm_build_ort meters the onnxruntime-genai builder, a subprocess: its CPU time counts."""
    import subprocess
    import sys

    src = S.Estimate(1.0, "test")   # 1 W per core: joules = CPU seconds
    j0 = src.read()
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\n"
                    "while time.process_time() - t < 0.4: pass"], check=True)
    assert src.read() - j0 >= 0.3   # the parent only waited: without the child, ~0
