"""Typed schemas of every metric file: the stages write through them, `aggregate` reads
through them, so a missing key, a wrong type or a non-finite number is an error naming the
file and the key. Intervals are `<metric>_ci95: [low, high]` (95%, bootstrap)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from stages.core.errors import PipelineError
from stages.core.files import read_json, write_json

Interval = Optional[tuple[float, float]]
Score = Optional[float]   # null: undefined (no ground truth, no object of that size)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DetEval(Record):
    runtime: str
    precision: str
    has_ground_truth: bool
    num_images: int
    num_detections: int
    AP: Score = None
    AP_ci95: Interval = None
    AP50: Score = None
    AP50_ci95: Interval = None
    AP75: Score = None
    AP_small: Score = None
    AP_medium: Score = None
    AP_large: Score = None
    AR100: Score = None


class DetBench(Record):
    runtime: str
    precision: str
    threads: int
    latency_ms_median: float = Field(gt=0)
    latency_ms_p90: float = Field(gt=0)
    invoke_per_s: float = Field(gt=0)
    images_per_s: float = Field(gt=0)
    e2e_over_invoke: float = Field(gt=0)
    size_mb: float = Field(gt=0)
    num_images: int
    machine: dict


class Agreement(Record):
    agreement_mAP: Score
    agreement_mAP_ci95: Interval
    agreement_AP50: Score
    agreement_AP50_ci95: Interval


class LmEval(Record):
    bits: int
    acc: float = Field(ge=0, le=1)
    acc_stderr: float = Field(ge=0)
    acc_ci95: Interval
    topk_acc: float = Field(ge=0, le=1)
    topk_acc_ci95: Interval
    topk_word_acc: float = Field(ge=0, le=1)
    topk_word_acc_ci95: Interval
    ppl: float = Field(gt=0)
    ppl_ci95: Interval
    k: int
    num_examples: int
    size_mb: float = Field(gt=0)
    param_mb: float = Field(gt=0)
    kernels: dict[str, int]   # layer class -> how many layers ran it, e.g. {"TorchAtenLinear": 210}


class LmBench(Record):
    device: str
    threads: int
    decode_tokens_per_s: float = Field(gt=0)
    prefill_tokens_per_s: float = Field(gt=0)
    eval_examples_per_s: float = Field(gt=0)
    kernels: dict[str, int]   # layer class -> how many layers ran it, e.g. {"TorchAtenLinear": 210}
    machine: dict


class LmQuantize(Record):
    bits: int
    group_size: int
    quant_time_s: float = Field(ge=0)
    size_mb: float = Field(gt=0)


class LmRtEval(Record):
    """Accuracy of one LM variant on a runtime other than PyTorch (lm_eval_ort)."""
    runtime: str               # e.g. onnxruntime
    method: str                # none | ort-int8 | ort-int4 | gptq
    bits: int
    acc: float = Field(ge=0, le=1)
    acc_ci95: Interval
    topk_acc: float = Field(ge=0, le=1)
    topk_word_acc: float = Field(ge=0, le=1)
    ppl: float = Field(gt=0)
    ppl_ci95: Interval
    k: int
    num_examples: int
    size_mb: float = Field(gt=0)
    threads: int
    versions: dict[str, str]


class LmRtBench(Record):
    """Speed, memory and the bandwidth bound of one LM variant on a runtime (lm_bench_ort)."""
    runtime: str
    method: str
    bits: int
    threads: int
    decode_tokens_per_s: float = Field(gt=0)
    prefill_tokens_per_s: float = Field(gt=0)
    size_mb: float = Field(gt=0)
    peak_rss_mb: float = Field(gt=0)        # a fresh process per variant: load + score + time
    weight_bytes_per_token: int = Field(gt=0)
    bandwidth_gb_s: float = Field(gt=0)     # this machine's triad bandwidth, same run
    bandwidth_fraction: float = Field(gt=0)  # decode tok/s / (bandwidth / weight bytes per token)
    versions: dict[str, str]
    machine: dict


AgreementFile = RootModel[dict[str, Agreement]]
LmEvalFile = RootModel[dict[str, LmEval]]
LmBenchFile = RootModel[dict[str, LmBench]]
LmQuantizeFile = RootModel[dict[str, LmQuantize]]
LmRtEvalFile = RootModel[dict[str, LmRtEval]]
LmRtBenchFile = RootModel[dict[str, LmRtBench]]


def write(path: str | Path, record: BaseModel) -> None:
    """Validate (again) and write atomically."""
    write_json(path, json.loads(record.model_dump_json()))


def read(path: str | Path, schema: type[BaseModel]):
    """A metric file parsed by its schema; errors name the file and the first bad key."""
    data = read_json(path, "metrics file")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise PipelineError(f"{path}: '{key}': {err['msg']}") from None
