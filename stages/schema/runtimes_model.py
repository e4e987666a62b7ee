"""params.yaml's lm_runtimes section: LM variants on other runtimes, `<runtime>-<precision>`;
an unknown runtime or an unsupported (runtime, precision) pair is a one-line error."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from stages.schema.section import Section, listify as _listify

RUNTIME_PRECISIONS = {"ort": ("fp32", "int8", "int4", "gptq")}   # runtime prefix -> precisions


class OrtKnobs(Section):
    block_size: Literal[16, 32, 64, 128, 256]
    accuracy_level: Literal[0, 1, 2, 3, 4]
    quantize_head: bool
    gptq_head: Literal["fp32", "int8", "int4"]


GGUF_TYPES = Literal["f32", "f16", "q8_0", "q4_0", "q4_k_m", "packaged"]


class LlamaCppKnobs(Section):
    variants: Annotated[list[GGUF_TYPES], BeforeValidator(_listify)]
    threads: int = Field(ge=1, le=256)

    @model_validator(mode="after")
    def _unique(self):
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("lists a variant twice")
        return self


class OpenVinoKnobs(Section):
    variants: Annotated[list[Literal["fp32", "int8", "int4"]], BeforeValidator(_listify)]
    group_size: Literal[-1, 16, 32, 64, 128, 256]
    ratio: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _unique(self):
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("lists a variant twice")
        return self


class LmRuntimes(Section):
    variants: Annotated[list[str], BeforeValidator(_listify)]
    limit: int = Field(ge=0)
    ort: OrtKnobs
    llamacpp: LlamaCppKnobs
    openvino: OpenVinoKnobs

    @model_validator(mode="after")
    def _pairs(self):
        for v in self.variants:
            runtime, _, prec = v.partition("-")
            if runtime not in RUNTIME_PRECISIONS:
                hint = ("; llama.cpp GGUF types go in lm_runtimes.llamacpp.variants" if "llama" in runtime
                        else "; OpenVINO precisions go in lm_runtimes.openvino.variants" if runtime in ("ov", "openvino")
                        else "")
                raise ValueError(f"unknown runtime {runtime!r} in variant {v!r} "
                                 f"(known: {', '.join(RUNTIME_PRECISIONS)}{hint})")
            if prec not in RUNTIME_PRECISIONS[runtime]:
                raise ValueError(f"runtime {runtime!r} does not support precision {prec!r} "
                                 f"(supported: {', '.join(RUNTIME_PRECISIONS[runtime])})")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("lists a variant twice")
        return self
