"""GPTQ (Frantar et al., 2022) through transformers.GPTQConfig -> optimum -> GPTQModel
(stages/methods/gptq.py), at `bits` with `group_size` columns per scale, on `calib_size`
passages of `calib_seq_len` tokens."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.methods import gptq as G
from stages.methods.gptq import GroupSize, check_packable, tokenized
from stages.methods.lm.base import LmMethod
from stages.runtimes.lm.base import Knobs


class GptqKnobs(Knobs):
    bits: Literal[2, 3, 4, 8] = 4
    group_size: GroupSize = 64           # columns sharing one scale/zero; -1 = one group per row
    calib_size: int = Field(128, ge=1)           # calibration passages (never evaluated ones)
    calib_seq_len: int = Field(128, ge=8)        # tokens per passage (its first)
    damp_percent: float = Field(0.01, gt=0, lt=1)   # Hessian dampening, fraction of its mean diagonal
    desc_act: bool = False                       # columns in order of decreasing activation
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(1, ge=1)                # torch threads: fixed, since GPTQ's float32 sums (its bits) depend on it
    seed: int = 0                                # calibration draw and torch seed


class Gptq(LmMethod):
    name = "gptq"
    knobs = GptqKnobs
    needs_calibration = quantizes = True
    format = "gptq"

    def check(self, source: Path, knobs: dict) -> None:
        super().check(source, knobs)
        check_packable(source, self.name)

    def _apply(self, source: Path, out: Path, knobs: dict, calibration, teacher) -> dict:
        tok, calib = tokenized(source, calibration, knobs)
        seconds = G.quantize(source, tok, calib, knobs["bits"], knobs, knobs["seed"], out)
        return {"bits": knobs["bits"], "seconds": seconds, "calib_passages": len(calib)}


METHOD = Gptq()
