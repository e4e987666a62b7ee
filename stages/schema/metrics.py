"""Typed schemas of every metric file: the stages write through them, `aggregate` reads
through them, so a missing key, a wrong type or a non-finite number is an error naming the
file and the key. Intervals are `<metric>_ci95: [low, high]` (95%, bootstrap)."""
from __future__ import annotations

import json
from pathlib import Path


from typing import Optional

from pydantic import BaseModel, Field, RootModel, ValidationError

from stages.core.errors import PipelineError
from stages.core.files import read_json, write_json
from stages.schema.metrics_base import Energy, Interval, Record, Score  # noqa: F401 (re-exported)
from stages.schema.metrics_rt import LmRtBench, LmRtBuild, LmRtEval  # noqa: F401 (re-exported)

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
    network_ms_median: float = Field(gt=0)   # the network alone, without the post-processing
    network_ms_p90: float = Field(gt=0)
    invoke_per_s: float = Field(gt=0)
    images_per_s: float = Field(gt=0)
    e2e_over_invoke: float = Field(gt=0)
    size_mb: float = Field(gt=0)
    peak_rss_mb: float = Field(gt=0)   # the bench process's peak resident memory (ru_maxrss)
    num_images: int
    energy_invoke: Energy      # bare invokes, per image
    energy_e2e: Energy         # end to end over every image, per image
    machine: dict


class DetConvert(Record):
    precision: str
    convert_time_s: float = Field(ge=0)
    size_mb: float = Field(gt=0)
    compress_energy: Energy    # conversion (+ calibration for int8), unit "run"


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
    energy_eval: Energy       # the scoring loop over every evaluated example, per example


class LmBench(Record):
    device: str
    threads: int
    decode_tokens_per_s: float = Field(gt=0)
    prefill_tokens_per_s: float = Field(gt=0)
    eval_examples_per_s: float = Field(gt=0)
    kernels: dict[str, int]   # layer class -> how many layers ran it, e.g. {"TorchAtenLinear": 210}
    sweep: dict[str, dict[str, float | str]]  # GPTQ kernel -> its tok/s (short protocol) or why not
    energy_decode: Energy     # per decoded token, one window per speed repeat
    energy_prefill: Energy    # per prefilled token, one window per speed repeat
    machine: dict
    # since 2026-12-03 (older files lack them): a fresh process per variant, the bound
    peak_rss_mb: Optional[float] = Field(default=None, gt=0)   # load + score + time
    weight_bytes_per_token: Optional[int] = Field(default=None, gt=0)
    bandwidth_gb_s: Optional[float] = Field(default=None, gt=0)   # triad, same run
    bandwidth_fraction: Optional[float] = Field(default=None, gt=0)


class LmQuantize(Record):
    bits: int
    group_size: int
    quant_time_s: float = Field(ge=0)
    size_mb: float = Field(gt=0)
    # GPTQ of this width, unit "run"; null only in a file written before the meter existed
    # (the report then says the GPTQ energy and break-even were not measured)
    compress_energy: Optional[Energy] = None


class LmChain(Record):
    """One node of a compression chain (lm_chain): its step's cost and what it left."""
    method: str                # the chain, methods joined by '+' (e.g. prune+gptq)
    input: str                 # the input node, or base
    step: str                  # this node's own method
    bits: int                  # 32 for a float model
    sparsity: float = Field(ge=0, le=1)   # zero fraction of the decoder linears (gptq: of its input)
    compress_time_s: float = Field(ge=0)  # this step only
    size_mb: float = Field(gt=0)          # the folder on disk (dense tensors, zeros included)
    size_sparse_mb: Optional[float] = None  # float models: pruned linears as bitmask + nonzeros
    compress_energy: Energy               # this step only, unit "run"
    pattern: Optional[str] = None         # prune: unstructured | 2:4
    losses: Optional[list[float]] = None  # distill: the loss of every step
    layers: Optional[int] = None          # distill: the student's decoder layers
    device: Optional[str] = None          # distill: where it trained (cpu | cuda)
    tokens_trained: Optional[int] = None  # distill: steps x batch_size x seq_len
    dtype: Optional[str] = None           # awq: the dtype its search and packing ran in
    calib_passages: Optional[int] = None  # awq: calibration passages used (calib_seq_len tokens)


AgreementFile = RootModel[dict[str, Agreement]]
LmEvalFile = RootModel[dict[str, LmEval]]
LmBenchFile = RootModel[dict[str, LmBench]]
LmQuantizeFile = RootModel[dict[str, LmQuantize]]
LmRtEvalFile = RootModel[dict[str, LmRtEval]]
LmRtBenchFile = RootModel[dict[str, LmRtBench]]
LmRtBuildFile = RootModel[dict[str, LmRtBuild]]


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
