"""The language-model sections of params.yaml beside its tables (stages/schema/lm_tables.py):\ndata, evaluation, speed and the GPU results set."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from stages.schema import kernels
from stages.schema.section import Section, listify


class Lambada(Section):
    source: Literal["offline", "local", "official"]
    local_path: str
    calib_pool: int = Field(ge=1)       # articles reserved for calibration: fixes the evaluation set
    calib_articles: int = Field(ge=1)   # the first of the pool's (seeded) order that calibration uses
    min_examples: int = Field(ge=1)     # an evaluation set smaller than this is an error
    min_words: int = Field(ge=1)
    max_words: int = Field(ge=2)
    min_target_len: int = Field(ge=1)

    @model_validator(mode="after")
    def _words(self):
        if self.min_words > self.max_words:
            raise ValueError("min_words must be <= max_words")
        if self.calib_articles > self.calib_pool:
            raise ValueError(f"calib_articles ({self.calib_articles}) must be <= calib_pool "
                             f"({self.calib_pool}): calibration draws from the reserved pool only")
        return self


class GpuLm(Section):
    """The GPU results set (stages/entry/lm_gpu.py), run on a CUDA machine only."""
    shapes: Annotated[list[str], BeforeValidator(listify)]  # speed-only random-weight shapes
    bits: Annotated[list[int], BeforeValidator(listify)]   # 16 = fp16; 8/4/2 = GPTQ
    group_size: int = Field(ge=1)
    kernels: Annotated[list[str], BeforeValidator(listify)]  # CUDA GPTQ kernels timed
    decode_tokens: int = Field(ge=1)
    decode_batches: Annotated[list[int], BeforeValidator(listify)]
    prefill_tokens: int = Field(ge=1)
    speed_repeats: int = Field(ge=1)
    profile_tokens: int = Field(ge=0)  # 0 = no profile
    static_cache: bool                 # also batch-1 decode with a static cache (compiled step)
    cuda_graph: bool                   # also batch-1 decode with the step captured as a CUDA graph

    @model_validator(mode="after")
    def _known(self):   # the shapes' names: lm_gpu checks them first (stages/models/llama_shapes.py)
        if bad := sorted(set(self.bits) - {16, 8, 4, 2}):
            raise ValueError(f"bits {bad} not in 16 | 8 | 4 | 2")
        if min(self.decode_batches, default=0) < 1:
            raise ValueError("decode_batches must be a non-empty list of batch sizes >= 1")
        for name in self.kernels:   # each runs the widths it supports; it must run on CUDA
            if name not in kernels.KERNELS or "cuda" not in kernels.KERNELS[name].devices:
                cuda = [k for k, v in kernels.KERNELS.items() if "cuda" in v.devices]
                raise ValueError(f"{name!r} is not a CUDA GPTQ kernel; choose from {cuda}")
        return self
