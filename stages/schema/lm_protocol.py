"""How every LM variant is measured: the accuracy protocol (eval_lm) and the speed protocol (bench_lm)."""
from __future__ import annotations

from pydantic import Field

from stages.schema.section import Section


class EvalLm(Section):
    k: int = Field(ge=1)               # top-k accuracy
    limit: int = Field(ge=0)           # evaluated examples (0 = all)
    threads: int = Field(ge=1)


class BenchLm(Section):
    threads: int = Field(ge=1)
    decode_tokens: int = Field(ge=2)
    prefill_tokens: int = Field(ge=32)   # at least the latency meter's 32-token prompt
    speed_repeats: int = Field(ge=1)
