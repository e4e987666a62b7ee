"""Offline data from codecarbon's package (read as files, no tracker started): its CPU TDP
table (data/hardware/cpu_power.csv) for the `estimate` method, and its grid carbon
intensities (data/private_infra/global_energy_mix.json, per country, gCO2e/kWh).

Power per core for `estimate`: energy.watts_per_core when set; else energy.tdp_w, or the
TDP codecarbon's table lists for this CPU's model name (exact, case-insensitive match), divided
by the logical cores this machine shows; else codecarbon's own fallback, DEFAULT_W_PER_CORE
(its `DEFAULT_POWER_PER_CORE`, used when a CPU is not in its table).
"""
from __future__ import annotations

import csv
import functools
import importlib.util
import json
import os
import time
from pathlib import Path

from stages.core.errors import PipelineError

DEFAULT_W_PER_CORE = 4.0     # codecarbon 3.3.2 core/cpu.py DEFAULT_POWER_PER_CORE
WORLD_GCO2_PER_KWH = 475.0   # codecarbon's world_average (IEA Global Energy & CO2 Status Report 2019)


def _data(rel: str) -> Path:
    """A data file of the installed codecarbon, located without importing it (find_spec)."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError("codecarbon is not installed (pip install codecarbon==3.3.2): its "
                            "offline CPU and grid tables are needed")
    return Path(spec.submodule_search_locations[0]) / "data" / rel


@functools.cache
def tdp_table() -> dict[str, float]:
    with _data("hardware/cpu_power.csv").open() as f:
        rows = list(csv.DictReader(f))
    out = {}
    for row in rows:
        try:
            out[row["Name"].strip().lower()] = float(row["TDP"])
        except (TypeError, ValueError):
            continue  # a few rows of codecarbon's table are malformed ("27.29.5")
    return out


def cpu_tdp(model: str) -> float | None:
    """codecarbon's TDP (W) for a CPU model name, or None when its table lacks it."""
    name = model.replace("(R)", "").replace("(TM)", "").split(" CPU @")[0].strip().lower()
    table = tdp_table()
    return table.get(model.strip().lower(), table.get(name))


def watts_per_core(cfg: dict, model: str, cores: int | None = None) -> tuple[float, str]:
    """(W per core, where it comes from) from the energy params."""
    cores = cores or os.cpu_count() or 1
    if cfg["watts_per_core"] is not None:
        return cfg["watts_per_core"], "energy.watts_per_core"
    if cfg["tdp_w"] is not None:
        return cfg["tdp_w"] / cores, f"energy.tdp_w={cfg['tdp_w']:g} W / {cores} cores"
    tdp = cpu_tdp(model)
    if tdp is not None:
        return tdp / cores, f"codecarbon TDP {tdp:g} W of {model!r} / {cores} cores"
    return DEFAULT_W_PER_CORE, (f"{model!r} is not in codecarbon's TDP table: its default "
                                f"{DEFAULT_W_PER_CORE:g} W per core")


@functools.cache
def _energy_mix() -> dict:
    with _data("private_infra/global_energy_mix.json").open() as f:
        return json.load(f)


def grid_intensity(gco2_per_kwh: float | None, country: str | None) -> tuple[float, str]:
    """(gCO2e per kWh, its source): a country's from codecarbon's data, else the param."""
    if country:
        row = _energy_mix().get(country.upper())
        if row is None or row.get("carbon_intensity") is None:
            raise PipelineError(f"energy.grid_country={country!r} is not an ISO 3166 alpha-3 code "
                                "in codecarbon's global_energy_mix.json (e.g. USA, FRA, DEU)")
        return float(row["carbon_intensity"]), (f"{row['country_name']} {row.get('year', '')}, "
                                                "codecarbon global_energy_mix.json")
    if gco2_per_kwh is None:
        return WORLD_GCO2_PER_KWH, "world average 475 (codecarbon; IEA 2019)"
    return gco2_per_kwh, "energy.grid_gco2_per_kwh"


def cpu_seconds() -> float:
    """This process's CPU time plus that of its finished (waited-for) children."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


class Estimate:
    name = "estimate"

    def __init__(self, watts_per_core: float, basis: str, clock=cpu_seconds):
        self.w, self.clock = watts_per_core, clock
        self.basis = f"process CPU time x {watts_per_core:.3g} W per core ({basis})"

    def read(self) -> float:
        return self.clock() * self.w

    def close(self) -> None:
        pass
