"""Read the metric files of the detector and LM stages through their schemas
(stages/schema/metrics.py) into one row per variant. A missing file or variant, a missing
key or a value of the wrong type is a PipelineError naming the file and the key."""
from __future__ import annotations

from pathlib import Path

from stages.core.errors import PipelineError
from stages.schema import metrics as M

DETECTOR_ORDER = ("float32", "float16", "int8", "dynamic_int8")  # fixed order of every table


def detector_variants(precisions: list[str]) -> list[str]:
    return [p for p in DETECTOR_ORDER if p in precisions]


def llm_variants(bits: list[int]) -> list[str]:
    """base, then GPTQ variants from the widest to the narrowest."""
    return ["base"] + [f"int{b}" for b in sorted(set(bits), reverse=True)]


def _entry(doc, variant: str, path: Path):
    if variant not in doc.root:
        raise PipelineError(f"{path}: missing key '{variant}'")
    return doc.root[variant]


def load_detector(root: Path, variants: list[str]) -> tuple[dict[str, dict], dict]:
    """Rows of eval + bench + agreement per precision, and the bench stage's machine record."""
    agree_path = root / "detector" / "agreement.json"
    agreement = M.read(agree_path, M.AgreementFile)
    rows, machine = {}, {}
    for v in variants:
        ev_path, bench_path = (root / "detector" / part / f"{v}.json" for part in ("eval", "bench"))
        row = M.read(ev_path, M.DetEval).model_dump()
        if row["has_ground_truth"] and row["AP"] is None:  # AP_small etc. may be null (-1)
            raise PipelineError(f"{ev_path}: 'AP' is null although has_ground_truth is true")
        bench = M.read(bench_path, M.DetBench).model_dump()
        machine, _ = bench.pop("machine"), bench.pop("num_images")  # same images as eval
        row.update(bench, **_entry(agreement, v, agree_path).model_dump())
        rows[v] = row
    return rows, machine


def load_llm(root: Path, variants: list[str]) -> tuple[dict[str, dict], dict]:
    """Rows of eval + bench (+ quantize for GPTQ widths) per variant, and the machine record."""
    def read(kind: str, name: str, schema):
        return root / "llm" / kind / f"{name}.json", M.read(root / "llm" / kind / f"{name}.json", schema)

    files = {("eval", "base"): read("eval", "base", M.LmEvalFile),
             ("bench", "base"): read("bench", "base", M.LmBenchFile)}
    if len(variants) > 1:
        files[("eval", "gptq")] = read("eval", "gptq", M.LmEvalFile)
        files[("bench", "gptq")] = read("bench", "gptq", M.LmBenchFile)
        quant_path = root / "llm" / "quantize.json"
        quant = M.read(quant_path, M.LmQuantizeFile)
    rows, machine = {}, {}
    for v in variants:
        group = "base" if v == "base" else "gptq"
        row = _entry(files[("eval", group)][1], v, files[("eval", group)][0]).model_dump()
        bench = _entry(files[("bench", group)][1], v, files[("bench", group)][0]).model_dump()
        machine = bench.pop("machine")
        row.update({k: val for k, val in bench.items() if k != "kernels"})
        row["bench_kernels"] = bench["kernels"]
        if v == "base":
            row.update(quant_time_s=None, group_size=None)
        else:
            q = _entry(quant, v, quant_path).model_dump()
            row.update(quant_time_s=q["quant_time_s"], group_size=q["group_size"])
        rows[v] = row
    return rows, machine
