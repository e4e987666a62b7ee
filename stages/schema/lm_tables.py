"""The language-model tables of params.yaml, which the generic LM stages iterate over:

- `models`: name -> {architecture, weights}: where a model's weights come from
  (stages/models/lm_source.py). Its base is the node of the same name.
- `methods` / `runtimes`: each plugin's knob defaults (stages/{methods,runtimes}/lm/<name>.py).
- `compress`: node -> {model, input, method, <knob overrides>}: the method applied to the input node
  (a model name or another node), so chains are nodes whose input is a node.
- `variants`: key -> {node, runtime, <knob overrides>}: a node built for a runtime, then scored
  and timed.
- `quant`: the width sweep: every listed quantizer on every listed model at every width of
  `bits` (one stage per model and method, a folder of `int<bits>/` nodes), each built, scored and
  timed on every listed runtime at its defaults; `dvc exp run -S quant.bits=4` sweeps one width.

The keys are DVC handles only. A variant's identity is its record (stages/models/lm_record.py:
model, method chain with each step's knobs, runtime and knobs), written beside its artifact;
its display name is derived from the record, never parsed back from a key.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from stages.core.errors import PipelineError
from stages.models.lm_source import ModelSource
from stages.schema.section import Section, listify

KEY = re.compile(r"^[a-z0-9][a-z0-9_+-]*$")   # a DVC stage suffix and a file name


class ModelEntry(Section):
    architecture: str = Field(pattern=r"^\w+$")   # the HF class in config.json, checked by lm_source
    weights: ModelSource


class Node(Section):
    """A compression step; its other keys are the method's knobs (checked by the method)."""
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    model: str                  # the model whose base starts the chain (also the distillation teacher)
    input: str                  # that model's name (its base) or another node of it
    method: str                 # stages/methods/lm/<method>.py


class Variant(Section):
    """A runtime build of a node; its other keys are the runtime's knobs (checked by it)."""
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    node: str                   # a model name (its base) or a compress node
    runtime: str                # stages/runtimes/lm/<runtime>.py


class Sweep(Section):
    models: Annotated[list[str], BeforeValidator(listify)]
    methods: Annotated[list[str], BeforeValidator(listify)]     # quantizers (a `bits` knob)
    bits: Annotated[list[Literal[2, 3, 4, 8]], BeforeValidator(listify)]
    runtimes: Annotated[list[str], BeforeValidator(listify)]    # each builds every sweep node


def sweep_node(model: str, method: str, bits: int) -> str:
    return f"{model}-{method}{bits}"


class LmTables(Section):
    models: dict[str, ModelEntry]
    quant: Sweep
    methods: dict[str, dict[str, Any]]
    runtimes: dict[str, dict[str, Any]]
    compress: dict[str, Node]
    variants: dict[str, Variant]

    @model_validator(mode="after")
    def _graph(self):
        for table in ("models", "compress", "variants"):
            for key in getattr(self, table):
                if not KEY.match(key):
                    raise ValueError(f"{table}: key {key!r}: lowercase letters, digits, '_', '+', '-'")
        clash = set(self.models) & set(self.compress)
        if clash:
            raise ValueError(f"compress: {sorted(clash)[0]!r} is also a model name")
        for name, field in (("models", self.quant.models), ("methods", self.quant.methods),
                            ("bits", self.quant.bits), ("runtimes", self.quant.runtimes)):
            if len(set(field)) != len(field):
                raise ValueError(f"quant.{name} lists a value twice")
        unknown = [m for m in self.quant.models if m not in self.models]
        if unknown:
            raise ValueError(f"quant.models: {unknown[0]!r} is not in models")
        sweep = {sweep_node(m, q, b) for m in self.quant.models for q in self.quant.methods
                 for b in self.quant.bits}
        if sweep & set(self.compress):
            raise ValueError(f"compress: {sorted(sweep & set(self.compress))[0]!r} is a quant sweep node")
        for key, node in self.compress.items():
            if node.input not in self.models and node.input not in self.compress:
                raise ValueError(f"compress.{key}.input: {node.input!r} is neither a model nor a node")
            chain(self, key)   # no cycle
            if model_of(self, key) != node.model:
                raise ValueError(f"compress.{key}.model: {node.model!r}, but its input chain starts "
                                 f"at {model_of(self, key)!r}")
        for key, v in self.variants.items():
            if v.node in sweep:
                raise ValueError(f"variants.{key}.node: {v.node!r} is a quant sweep width; its runtimes "
                                 f"are quant.runtimes (or make it a compress node)")
            if v.node not in self.models and v.node not in self.compress:
                raise ValueError(f"variants.{key}.node: {v.node!r} is neither a model nor a compress node")
        return self


def sweep_nodes(t: LmTables) -> dict[str, tuple[str, str, int]]:
    """Every quant sweep node: name -> (model, method, bits)."""
    return {sweep_node(m, q, b): (m, q, b) for m in t.quant.models for q in t.quant.methods for b in t.quant.bits}


def chain(t: LmTables, node: str) -> list[str]:
    """The compress nodes from the model's base to `node` (empty for a base)."""
    steps, seen = [], set()
    while node in t.compress:
        if node in seen:
            raise ValueError(f"compress: {node!r} is its own input (a cycle)")
        seen.add(node)
        steps.append(node)
        node = t.compress[node].input
    return steps[::-1]


def model_of(t: LmTables, node: str) -> str:
    while node in t.compress:
        node = t.compress[node].input
    return sweep_nodes(t).get(node, (node,))[0]


def extras(section: Section) -> dict:
    return dict(section.__pydantic_extra__ or {})


def node_knobs(t: LmTables, node: str) -> dict:
    """The method's knobs of a node: its defaults under `methods`, then the node's own."""
    n = t.compress[node]
    return {**t.methods.get(n.method, {}), **extras(n)}


def variant_knobs(t: LmTables, key: str) -> dict:
    v = t.variants[key]
    return {**t.runtimes.get(v.runtime, {}), **extras(v)}


def tables(raw: dict) -> LmTables:
    """The LM tables of a params dict (validated), or one line."""
    from pydantic import ValidationError

    try:
        return LmTables.model_validate({k: raw.get(k, {}) for k in LmTables.model_fields})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise PipelineError(f"params: {loc}: {err['msg'].removeprefix('Value error, ')}") from None
