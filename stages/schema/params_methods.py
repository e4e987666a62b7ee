"""The compression-method sections of params.yaml beyond lm_quantize/lm_rtn: pruning,
distillation, GPTQ and AWQ as chain steps, and the chains that compose them (stage lm_chain)."""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field, model_validator

from stages.schema.section import Section

CHAIN_METHODS = ("prune", "distill", "gptq", "awq")
QUANTIZED = ("gptq", "awq")     # packed weights: nothing can prune or train them afterwards
RESERVED = ("base", "gptq", "rtn", "ort", "gguf", "ov")   # models/llm/<name> of other stages


class Prune(Section):
    sparsity: float = Field(ge=0, lt=1)
    pattern: Literal["unstructured", "2:4"]


class Distill(Section):
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    seq_len: int = Field(ge=8)
    lr: float = Field(gt=0, lt=1)
    temperature: float = Field(gt=0)
    alpha: float = Field(ge=0, le=1)
    drop_every: int = Field(ge=0)
    threads: int = Field(ge=1)
    device: Literal["cpu", "cuda"]   # cuda: teacher and student train on the GPU (longer runs)


class GptqStep(Section):
    bits: Literal[2, 3, 4, 8]


class AwqStep(Section):
    bits: Literal[4]        # AWQ's GEMM format packs 4-bit weights only
    # search/pack dtype; auto: float16 on CUDA, bfloat16 on a CPU. Not float32: GPTQModel 7.6's
    # search then overwrites its own restore copy on a CPU (README "AWQ")
    dtype: Literal["auto", "float16", "bfloat16"]
    threads: int = Field(ge=1)   # torch threads of the AWQ pass


class ChainNode(Section):
    input: str                               # "base" or another node
    method: Literal["prune", "distill", "gptq", "awq"]
    pattern: Optional[Literal["unstructured", "2:4"]] = None   # prune: overrides prune.pattern
    bits: Optional[Literal[2, 3, 4, 8]] = None                   # gptq/awq: overrides <method>.bits

    @model_validator(mode="after")
    def _overrides(self):
        if self.pattern is not None and self.method != "prune":
            raise ValueError(f"'pattern' is a prune knob, not {self.method}'s")
        if self.bits is not None and self.method not in QUANTIZED:
            raise ValueError(f"'bits' is a knob of {QUANTIZED}, not {self.method}'s")
        if self.method == "awq" and self.bits not in (None, 4):
            raise ValueError(f"AWQ packs 4-bit weights only, not {self.bits}")
        return self


def steps(chains: dict[str, ChainNode], node: str) -> list[str]:
    """The methods from base to `node`, in order (the chain's name is them joined by '+')."""
    out = []
    while node != "base":
        out.insert(0, chains[node].method)
        node = chains[node].input
    return out


def check_chains(chains: dict[str, ChainNode]) -> None:
    """Every input exists, no cycle, no reserved or path-unsafe name, nothing after a quantizer."""
    for name, node in chains.items():
        if not re.fullmatch(r"[a-z0-9]+(\+[a-z0-9]+)*", name) or name in RESERVED:
            raise ValueError(f"chain node {name!r}: use letters/digits joined by '+', not one of {RESERVED}")
        if node.input != "base" and node.input not in chains:
            raise ValueError(f"chain node {name!r}: input {node.input!r} is neither base nor a node")
        seen, cur = {name}, node.input
        while cur != "base":
            if cur in seen:
                raise ValueError(f"chain node {name!r}: its inputs form a cycle")
            seen.add(cur)
            cur = chains[cur].input
        done = steps(chains, node.input) if node.input != "base" else []
        if node.method not in QUANTIZED and any(m in QUANTIZED for m in done):
            raise ValueError(f"chain node {name!r}: cannot {node.method} after {'+'.join(done)}: "
                             "the weights are packed integers (put quantization last)")
        if node.method in QUANTIZED and any(m in QUANTIZED for m in done):
            raise ValueError(f"chain node {name!r}: quantizes an already quantized model")
