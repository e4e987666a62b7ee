"""Sections every family of stages reads: bootstrap intervals and the energy meter."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from stages.schema.section import Section


class Bootstrap(Section):
    samples: int = Field(ge=10)        # bootstrap resamples for every 95% interval
    seed: int = Field(ge=0)            # its own seed: changing `seed` never re-scores


class Energy(Section):
    method: Literal["auto", "nvml", "rapl", "estimate"]
    idle_s: float = Field(ge=0, le=60)                  # idle window before each timed series
    tdp_w: Optional[float] = Field(default=None, gt=0)  # CPU TDP for `estimate` (null: codecarbon's table)
    watts_per_core: Optional[float] = Field(default=None, gt=0)  # overrides tdp_w
    grid_gco2_per_kwh: float = Field(ge=0)              # carbon intensity of the grid
    grid_country: Optional[str] = Field(default=None, pattern=r"^[A-Za-z]{3}$")  # ISO alpha-3
