"""The language-model sections of params.yaml (data, model, GPTQ, evaluation, speed)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from stages.schema import kernels
from stages.schema.section import Section, int_keys, listify


class Lambada(Section):
    source: Literal["offline", "local", "official"]
    local_path: str
    calib_articles: int = Field(ge=1)
    min_words: int = Field(ge=1)
    max_words: int = Field(ge=2)
    min_target_len: int = Field(ge=1)

    @model_validator(mode="after")
    def _words(self):
        if self.min_words > self.max_words:
            raise ValueError("min_words must be <= max_words")
        return self


class Llm(Section):
    source: Literal["package", "hub"]
    hub_id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    revision: str = Field(pattern=r"^[0-9a-f]{40}$")  # a pinned commit of hub_id


class Quant(Section):
    bits: Annotated[list[Literal[2, 3, 4, 8]], BeforeValidator(listify)]
    group_size: int
    calib_size: int = Field(ge=1)
    calib_seq_len: int = Field(ge=8)
    damp_percent: float = Field(gt=0, lt=1)
    desc_act: bool
    device: Literal["cpu", "cuda"]
    threads: int = Field(ge=1)

    @model_validator(mode="after")
    def _check(self):
        if not self.bits or len(set(self.bits)) != len(self.bits):
            raise ValueError("bits must be distinct values from (2, 3, 4, 8)")
        if self.group_size <= 0 and self.group_size != -1:
            raise ValueError(f"group_size must be > 0 or -1 (one group per row), got {self.group_size}")
        return self


class EvalLm(Section):
    k: int = Field(ge=1)
    backend: Annotated[str | dict[int, str], BeforeValidator(int_keys)]  # GPTQ kernel (per width)
    limit: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    device: Literal["cpu", "cuda"]
    threads: int = Field(ge=1)


class KernelSweep(Section):
    kernels: list[str]                 # GPTQ kernels timed for every width they run
    decode_tokens: int = Field(ge=1)
    prefill_tokens: int = Field(ge=1)
    repeats: int = Field(ge=1)

    @model_validator(mode="after")
    def _known(self):
        unknown = sorted(set(self.kernels) - set(kernels.KERNELS))
        if unknown:
            raise ValueError(f"unknown GPTQ kernel(s) {unknown}; choose from {list(kernels.KERNELS)}")
        return self


class BenchLm(Section):
    device: Literal["cpu", "cuda"]
    threads: int = Field(ge=1)
    decode_tokens: int = Field(ge=1)
    prefill_tokens: int = Field(ge=1)
    speed_repeats: int = Field(ge=1)
    score_examples: int = Field(ge=1)
    sweep: KernelSweep


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
