"""The gpu_decode section: batch-1 decode against the HBM bound on a CUDA GPU
(stages/entry/gpu_decode.py). Its rows are empty by default, so a CPU's DAG has no GPU stage;
the gpu profile (stages/profiles/gpu.yaml) fills them."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from stages.models import llama_shapes, opt_shapes
from stages.schema.section import Section


class DecodeRow(Section):
    shape: str                                # a published shape, random weights (speed only)
    weights: Literal[16, 4]                   # decoder linears: bfloat16 | int4
    head: Literal[16, 4]                      # LM head: bfloat16 | int4
    kernel: Literal["tinygemm", "inductor", "triton", "gemlite", "gemlite_cached"] = "tinygemm"   # int4: torch's kernel | fused dequant | ours | GemLite's | GemLite's with its output ring cached

    @model_validator(mode="after")
    def _known(self):
        known = sorted(llama_shapes.SHAPES) + sorted(opt_shapes.SHAPES)
        if self.shape not in known:
            raise ValueError(f"unknown shape {self.shape!r}; known: {known}")
        return self


class GpuDecode(Section):
    # a row's name is a DVC param key and a file name: no dots (DVC splits keys at them)
    rows: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")], DecodeRow]
    group_size: int = Field(ge=32)            # input columns per int4 scale and zero
    compile_mode: Literal["default", "max-autotune-no-cudagraphs"]   # the step is then captured by hand
    prompt_tokens: int = Field(ge=1)
    decode_tokens: int = Field(ge=1)
    speed_repeats: int = Field(ge=1)
    profile_tokens: int = Field(ge=0)         # 0 = no profile
