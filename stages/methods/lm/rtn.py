"""Round-to-nearest through GPTQModel's weight-only path (stages/methods/rtn.py): GPTQ's bits,
group size, symmetric grid and packing, no calibration."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.methods import rtn as R
from stages.methods.lm.base import LmMethod
from stages.methods.gptq import GroupSize, check_packable
from stages.runtimes.lm.base import Knobs


class RtnKnobs(Knobs):
    bits: Literal[2, 3, 4, 8] = 4
    group_size: GroupSize = 64           # as GPTQ's
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(2, ge=1)                # GPTQModel's CPU workers


class Rtn(LmMethod):
    name = "rtn"
    knobs = RtnKnobs
    quantizes = True
    format = "gptq"

    def check(self, source: Path, knobs: dict) -> None:
        super().check(source, knobs)
        check_packable(source, self.name)

    def _apply(self, source: Path, out: Path, knobs: dict, calibration, teacher) -> dict:
        return {"bits": knobs["bits"], "seconds": R.quantize(source, knobs["bits"], knobs, out)}


METHOD = Rtn()
