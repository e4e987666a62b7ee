"""The one typed schema of params.yaml: every knob's type, bounds and choices, declared once
(pydantic, extra keys forbidden). params.yaml's comments say what each knob does."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from stages.schema.params_base import Section, _listify  # noqa: F401  (re-exported)
from stages.schema.runtimes_model import LmRuntimes


class CocoLocal(Section):
    images: str              # folder of COCO JPEGs (read in place)
    annotations: str         # instances_*.json of those images
    calib_images: str        # a separate folder of calibration images


class CocoOfficial(Section):
    calib_split: Literal["train2017"]  # calibration images come from a split never evaluated


class Coco(Section):
    source: Literal["offline", "local", "official"]
    num_images: int = Field(ge=0)      # first N image ids in sorted order (0 = all)
    local: CocoLocal
    official: CocoOfficial


Precision = Literal["float32", "float16", "int8", "dynamic_int8"]


class Detector(Section):
    source: Literal["package", "official"]
    precisions: Annotated[list[Precision], BeforeValidator(_listify)]
    calib_size: int = Field(ge=1)
    score_threshold: float = Field(ge=0, le=1)
    iou_threshold: float = Field(gt=0, le=1)
    max_detections: int = Field(ge=1)

    @model_validator(mode="after")
    def _reference(self):
        if "float32" not in self.precisions:
            raise ValueError("must include float32 (the agreement reference)")
        if len(set(self.precisions)) != len(self.precisions):
            raise ValueError("lists a precision twice")
        return self


class Bootstrap(Section):
    samples: int = Field(ge=10)        # bootstrap resamples for every 95% interval
    seed: int = Field(ge=0)            # its own seed: changing `seed` never re-scores


class BenchDet(Section):
    threads: int = Field(ge=1)
    warmup: int = Field(ge=0)
    latency_runs: int = Field(ge=1)


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
    bits: Annotated[list[Literal[2, 3, 4, 8]], BeforeValidator(_listify)]
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
    limit: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    device: Literal["cpu", "cuda"]
    threads: int = Field(ge=1)


class BenchLm(Section):
    device: Literal["cpu", "cuda"]
    threads: int = Field(ge=1)
    decode_tokens: int = Field(ge=1)
    prefill_tokens: int = Field(ge=1)
    speed_repeats: int = Field(ge=1)
    score_examples: int = Field(ge=1)


class Params(Section):
    seed: int = Field(ge=0)
    coco: Coco
    detector: Detector
    bootstrap: Bootstrap
    bench_det: BenchDet
    lambada: Lambada
    llm: Llm
    quant: Quant
    eval_lm: EvalLm
    bench_lm: BenchLm
    lm_runtimes: LmRuntimes
