"""AWQ (Lin et al., 2024) through GPTQModel's METHOD.AWQ (stages/methods/awq.py): activation-aware
scales searched on the calibration passages of full `calib_seq_len` length, then int4 with
`group_size` columns per scale, in `dtype` (auto: float16 on CUDA, bfloat16 on a CPU)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.methods import awq as A
from stages.methods.lm.base import LmMethod
from stages.methods.gptq import GroupSize, tokenized
from stages.runtimes.lm.base import Knobs


class AwqKnobs(Knobs):
    bits: Literal[4] = 4                         # AWQ's GEMM format
    group_size: GroupSize = 64
    calib_size: int = Field(128, ge=1)
    calib_seq_len: int = Field(128, ge=8)        # only passages of this full length are searched on
    dtype: Literal["auto", "float16", "bfloat16"] = "auto"   # search and packing dtype
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(2, ge=1)
    seed: int = 0


class Awq(LmMethod):
    name = "awq"
    knobs = AwqKnobs
    needs_calibration = quantizes = True
    format = "awq"

    def check(self, source: Path, knobs: dict) -> None:
        super().check(source, knobs)
        A.check(source, knobs["group_size"])    # projection widths, before the model loads

    def _apply(self, source: Path, out: Path, knobs: dict, calibration, teacher) -> dict:
        _, calib = tokenized(source, calibration, knobs)
        dtype = A.search_dtype(knobs["dtype"], knobs["device"])
        seconds = A.quantize(source, calib, knobs["bits"], knobs, knobs["seed"], out, dtype)
        return {"bits": knobs["bits"], "seconds": seconds, "dtype": dtype,
                "calib_passages": len(A.uniform(calib, knobs["calib_seq_len"]))}


METHOD = Awq()
