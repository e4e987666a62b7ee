"""Metric-file schema of the GPU results set (stages/entry/lm_gpu.py), kept apart from the
CPU files so the two are never mixed silently: every row says device cuda and which GPU."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from stages.schema.metrics_base import Energy, Record


class Profile(Record):
    """Where a batch-1 decode step's time goes (torch.profiler, one generation or replays)."""
    wall_s_per_token: float = Field(gt=0)
    kernel_s_per_token: float = Field(ge=0)   # summed CUDA kernel time
    kernel_time_fraction: float = Field(ge=0)  # kernel / wall: far below 1 = launch-bound
    kernels_per_token: float = Field(ge=0)
    top_kernels: dict[str, float]             # kernel -> total seconds in the profiled run


class Decode(Record):
    batch: int = Field(ge=1)
    cache: Literal["dynamic", "static", "graph"]   # static: compiled step; graph: captured step
    tokens_per_s: float = Field(gt=0)     # batch x new tokens / median wall time
    energy: Energy                        # NVML, J per decoded token (unit token)
    profile: Optional[Profile] = None   # graph: where a replayed step's time goes


class LmGpu(Record):
    device: Literal["cuda"]
    gpu: str                               # e.g. NVIDIA H200
    model: str                             # llama-3.2-3b | tinyllama-1.1b | smollm2-135m
    runtime: str                           # torch
    method: str                            # none | gptq | gptq-random (speed-only codes)
    bits: int                              # 16 = fp16
    speed_only: bool                       # random weights: accuracy is n/a
    acc: Optional[float] = Field(default=None, ge=0, le=1)   # null for speed-only models
    kernels: dict[str, int]                # layer class -> layers that ran it
    decode_tokens_per_s: float = Field(gt=0)            # batch 1, the faster cache
    decode_cache: Literal["dynamic", "static", "graph"]  # which cache that was
    prefill_tokens_per_s: float = Field(gt=0)           # batch 1
    decode: list[Decode]                                # every decode batch timed
    energy_j_per_token_decode: float = Field(ge=0)      # the same batch-1 runs, NVML, gross
    energy_j_per_token_prefill: float = Field(ge=0)
    energy_method: Literal["nvml", "nvml-power"]
    weight_bytes_per_token: int = Field(gt=0)
    bandwidth_fraction: float = Field(gt=0)   # decode tok/s / (copy GB/s / bytes per token)
    size_mb: float = Field(gt=0)              # weights in GPU memory
    gpu_memory_mb: float = Field(gt=0)        # peak allocated while timing
    profile: Optional[Profile] = None

    @model_validator(mode="after")
    def _no_accuracy_for_random_weights(self):
        if self.speed_only and self.acc is not None:
            raise ValueError("a speed-only (random-weight) row has no accuracy: acc must be null")
        return self


class LmGpuFile(Record):
    machine: dict                             # CPU, GPU, driver, CUDA, library versions
    copy_gb_s: float = Field(gt=0)            # device-to-device copy, read + write bytes
    params: dict                              # the gpu_lm section it ran with
    variants: dict[str, LmGpu]
    failed: dict[str, str]                    # variant -> the error that stopped it
    # since the fifth run of 2026-12-03: every energy window lasts >= this (older: one call)
    energy_min_window_s: Optional[float] = None


def of_row(key: str, row: str) -> bool:
    """Whether a variant or failure named `key` belongs in row `row`'s file (the row itself, or
    one of its steps, `<row>-<step>`)."""
    return key == row or key.startswith(row + "-")


class DecodeRow(Record):
    """One row of gpu_decode (stages/entry/gpu_decode.py): batch-1 greedy decode of one model
    shape on the fused engine (stages/runtimes/fused_llama.py) against the HBM bound measured
    in the same process."""
    machine: dict                             # CPU, GPU, driver, CUDA, library versions
    gpu: str                                  # e.g. NVIDIA H100 80GB HBM3
    model: str                                # a speed-only shape (random weights)
    kernel: Literal["tinygemm", "inductor", "triton", "gemlite", "gemlite_cached"]   # int4: torch's | dequantized in the step | int4_gemv.py | GemLite | GemLite, output ring cached
    weights: Literal[16, 4]                   # decoder linears: bfloat16 | int4
    head: Literal[16, 4]                      # LM head
    group_size: int = Field(ge=1)
    acc: None = None                          # random weights: accuracy is n/a
    prompt_tokens: int = Field(ge=1)
    decode_tokens: int = Field(ge=1)          # timed steps per window (the prefill is outside)
    tokens_per_s: float = Field(gt=0)         # decode tokens / median window wall time
    energy: Energy                            # NVML, J per decoded token
    weight_bytes_per_token: int = Field(gt=0)  # bytes a step reads (linears, norms, head)
    copy_gb_s: float = Field(gt=0)            # device-to-device copy, read + write bytes
    read_gb_s: float = Field(gt=0)            # a reduction over 4 GB: read bytes
    bound_gb_s: float = Field(gt=0)           # the larger of the two: the bound never flatters
    bound_tokens_per_s: float = Field(gt=0)   # bound_gb_s / weight bytes per token
    bandwidth_fraction: float = Field(gt=0, le=1)   # tokens_per_s / bound_tokens_per_s
    compile_s: float = Field(ge=0)            # torch.compile + capture, before any timing
    gpu_memory_mb: float = Field(gt=0)        # peak allocated
    profile: Optional[Profile] = None         # profile_tokens steps under torch.profiler
    params: dict                              # the gpu_decode section and the row it ran with
