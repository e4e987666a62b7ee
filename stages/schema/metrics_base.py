"""The shared parts of the metric-file schemas: the record base (no extra keys, no NaN),
intervals and the energy figure every meter writes."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


Interval = Optional[tuple[float, float]]
Score = Optional[float]   # null: undefined (no ground truth, no object of that size)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Energy(Record):
    """Energy of a series of measured windows (stages/meters/energy.py), per `unit`."""
    method: Literal["nvml", "nvml-power", "rapl", "estimate"]
    basis: str                 # how the joules were obtained (counter, or CPU time x W/core)
    unit: str                  # image | token | example | run
    windows: int = Field(ge=1)
    units: float = Field(gt=0)
    joules: float = Field(ge=0)
    seconds: float = Field(ge=0)
    power_w: float = Field(ge=0)         # average power over the windows (gross)
    idle_power_w: float = Field(ge=0)    # measured just before the windows
    j_per_unit: float = Field(ge=0)      # median over windows (gross)
    j_per_unit_p10: float = Field(ge=0)
    j_per_unit_p90: float = Field(ge=0)
    net_j_per_unit: float                # median net of idle (may be < 0 on a noisy counter)
