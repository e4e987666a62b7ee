"""Metric-file schemas of the language model on other runtimes (ONNX Runtime GenAI)."""
from __future__ import annotations


from pydantic import Field

from stages.schema.metrics_base import Energy, Interval, Record


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
    runtime_config: dict[str, str] | None = None   # OpenVINO: whether dynamic quantization ran
    energy_eval: Energy        # the scoring loop over every evaluated example, per example


class LmRtBuild(Record):
    """One model-builder run of lm_build_ort (ort-gptq: one per width; GPTQ itself is lm_quantize's)."""
    build_time_s: float = Field(ge=0)
    size_mb: float = Field(gt=0)
    compress_energy: Energy    # the builder run, unit "run"
    tensor_types: dict[str, int] | None = None   # GGUF: tensors per ggml type (e.g. Q4_0, Q6_K)
    head_type: str | None = None                 # the LM head's type (GGUF: the tied table's ggml type;
                                                 # ORT: read from the graph, e.g. float32, int8 block 32)


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
    own_timer_decode_tokens_per_s: float | None = None   # llama.cpp: the same runs by its own
                                                          # eval timers (no Python, no sampling)
    energy_decode: Energy     # per decoded token, one window per speed repeat (timing process)
    energy_prefill: Energy    # per prefilled token, one window per speed repeat
    versions: dict[str, str]
    runtime_config: dict[str, str] | None = None   # OpenVINO: whether dynamic quantization ran
    machine: dict
