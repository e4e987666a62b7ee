"""The LM tables against the registered plugins, for check_params (the first stage): every method
and runtime exists, every knob is known and in range, every (model, method, runtime) cell is
supported. One line per problem, before any stage runs; the plugins are imported here only."""
from __future__ import annotations

from stages.core.device import require_device
from stages.core.errors import PipelineError
from stages.methods import lm as methods
from stages.runtimes import lm as runtimes
from stages.runtimes.lm.base import validate_knobs
from stages.schema.lm_tables import LmTables, chain, model_of, node_knobs, variant_knobs


def check_plugins(t: LmTables) -> None:
    """Every method and runtime registered, every knob known and in range, every architecture
    supported: one line per problem, before any stage runs (plugins imported here only)."""
    for name, knobs in t.runtimes.items():
        validate_knobs(runtimes.get(name).knobs, knobs, f"runtimes.{name}")
    for name, knobs in t.methods.items():
        needs_cuda(validate_knobs(methods.get(name).knobs, knobs, f"methods.{name}"), f"methods.{name}")
    for key in t.compress:
        method = methods.get(t.compress[key].method)
        needs_cuda(validate_knobs(method.knobs, node_knobs(t, key), f"compress.{key}"), f"compress.{key}")
        quantized = [n for n in chain(t, key)[:-1] if methods.get(t.compress[n].method).quantizes]
        if quantized:
            raise PipelineError(f"compress.{key}: its input chain is quantized by {quantized[-1]!r}; "
                                f"a quantizer ends a chain")
    for method in t.quant.methods:
        m = methods.get(method)
        if not m.quantizes or "bits" not in m.knobs.model_fields:
            raise PipelineError(f"quant.methods: {method} is not a quantizer with a `bits` knob")
        for b in t.quant.bits:
            validate_knobs(m.knobs, {**t.methods.get(method, {}), "bits": b}, f"quant ({method}, {b} bits)")
    for rt_name in t.quant.runtimes:
        for model in t.quant.models:
            for method in t.quant.methods:
                supports(runtimes.get(rt_name), t.models[model].architecture, methods.get(method),
                         f"quant.runtimes: {rt_name} ({model}, {method})")
    for key, v in t.variants.items():
        rt = runtimes.get(v.runtime)
        validate_knobs(rt.knobs, variant_knobs(t, key), f"variants.{key}")
        steps = chain(t, v.node)
        supports(rt, t.models[model_of(t, v.node)].architecture,
                 methods.get(t.compress[steps[-1]].method) if steps else None, f"variants.{key}")


def needs_cuda(knobs: dict, who: str) -> None:
    """One line where a method is set to run on CUDA and this machine has no CUDA device."""
    require_device(knobs.get("device", "cpu"), who)


def unsupported(rt, arch: str) -> str | None:
    """Why runtime `rt` cannot build `arch` (its declared reason, or the architectures it can), else None."""
    return rt.unsupported.get(arch) or (None if rt.architectures is None or arch in rt.architectures
                                        else f"supported: {', '.join(sorted(rt.architectures))}")


def supports(rt, arch: str, last, who: str) -> None:
    """One line where runtime `rt` cannot build a node of `arch` whose last method is `last`."""
    why = unsupported(rt, arch)
    if why:
        raise PipelineError(f"{who}: the {rt.name} runtime does not support {arch}: {why}")
    if last is not None and last.quantizes and last.format not in rt.quantized_sources:
        raise PipelineError(f"{who}: the {rt.name} runtime cannot build a {last.name} ({last.format}) checkpoint "
                            f"model; it takes {sorted(rt.quantized_sources) or 'float models only'}")


