"""Read and validate the metric files the detector and LM stages write (no heavy imports).

A missing file, section or key, or a value of the wrong type, is a PipelineError naming the
file and the key.
"""
from __future__ import annotations

import math
from pathlib import Path

from stages.common import PipelineError, as_list, read_json, require_int
from stages.report import DETECTOR_METRICS, LLM_METRICS, Metric

DETECTOR_ORDER = ("float32", "float16", "int8", "dynamic_int8")  # fixed order of every table


def detector_variants(precisions) -> list[str]:
    unknown = [p for p in as_list(precisions) if p not in DETECTOR_ORDER]
    if unknown:
        raise PipelineError(f"unknown detector.precisions {unknown}; expected {DETECTOR_ORDER}")
    return [p for p in DETECTOR_ORDER if p in as_list(precisions)]


def llm_variants(bits) -> list[str]:
    """base, then GPTQ variants from the widest to the narrowest (quant.bits: scalar or list)."""
    bits = [require_int("quant.bits", b, 1) for b in as_list(bits)]
    return ["base"] + [f"int{b}" for b in sorted(set(bits), reverse=True)]


def check(m: Metric, value, where: str) -> None:
    if value is None and m.nullable:
        return
    if m.key == "has_ground_truth":
        ok, kind = isinstance(value, bool), "true or false"
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    if not ok:
        raise PipelineError(f"{where}: '{m.key}' must be {kind}, got {value!r}")


def pick(entry, metrics, where: str) -> dict:
    """The given metrics of one JSON object, each present and well-typed."""
    if not isinstance(entry, dict):
        raise PipelineError(f"{where} must be a JSON object, got {type(entry).__name__}")
    for m in metrics:
        if m.key not in entry:
            raise PipelineError(f"{where}: missing key '{m.key}'")
        check(m, entry[m.key], where)
    return {m.key: entry[m.key] for m in metrics}


def section(doc, name: str, path: Path):
    if not isinstance(doc, dict) or name not in doc:
        raise PipelineError(f"{path}: missing key '{name}'")
    return doc[name]


def from_source(metrics, source: str) -> tuple[Metric, ...]:
    return tuple(m for m in metrics if m.source == source)


def load_detector(root: Path, variants: list[str]) -> dict[str, dict]:
    agree_path = root / "detector" / "agreement.json"
    agreement = read_json(agree_path, "detector agreement metrics")
    rows = {}
    for v in variants:
        path = root / "detector" / f"{v}.json"
        row = pick(read_json(path, f"detector metrics of {v}"),
                   from_source(DETECTOR_METRICS, "eval"), str(path))
        if row["has_ground_truth"] and row["AP"] is None:  # AP_small etc. may be null (-1)
            raise PipelineError(f"{path}: 'AP' is null although has_ground_truth is true")
        row.update(pick(section(agreement, v, agree_path),
                        from_source(DETECTOR_METRICS, "agreement"), f"{agree_path} [{v}]"))
        rows[v] = row
    return rows


def load_llm(root: Path, variants: list[str]) -> dict[str, dict]:
    base_path, gptq_path, quant_path = (root / "llm" / f"{n}.json"
                                        for n in ("base", "gptq", "quantize"))
    docs = {"base": read_json(base_path, "base LM metrics")}
    if len(variants) > 1:
        docs["gptq"] = read_json(gptq_path, "GPTQ LM metrics")
        docs["quant"] = read_json(quant_path, "GPTQ quantization metrics")
    quant_metrics = from_source(LLM_METRICS, "quantize")
    rows = {}
    for v in variants:
        path, doc = (base_path, docs["base"]) if v == "base" else (gptq_path, docs["gptq"])
        row = pick(section(doc, v, path), from_source(LLM_METRICS, "eval"), f"{path} [{v}]")
        if v == "base":
            row.update(dict.fromkeys((m.key for m in quant_metrics), None))
        else:
            row.update(pick(section(docs["quant"], v, quant_path), quant_metrics,
                            f"{quant_path} [{v}]"))
        rows[v] = row
    return rows
