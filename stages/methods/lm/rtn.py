"""Round-to-nearest through GPTQModel's weight-only path (stages/methods/rtn.py): GPTQ's bits,
group size, symmetric grid and packing, no calibration."""
from __future__ import annotations

from pathlib import Path

from stages.methods import rtn as R
from stages.methods.lm.base import LmMethod
from stages.methods.lm.gptq import check_packable


class Rtn(LmMethod):
    name = "rtn"
    defaults = {"bits": 4, "group_size": 64, "device": "cpu", "threads": 2}
    quantizes = True

    def check(self, source: Path, knobs: dict) -> None:
        super().check(source, knobs)
        check_packable(source, self.name)

    def _apply(self, source: Path, out: Path, knobs: dict, calibration, teacher) -> dict:
        return {"bits": knobs["bits"], "seconds": R.quantize(source, knobs["bits"], knobs, out)}


METHOD = Rtn()
