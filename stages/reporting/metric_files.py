"""Read the metric files of the detector stages through their schemas
(stages/schema/metrics.py) into one row per variant (the LM's: stages/reporting/lm.py). A missing file or variant, a missing
key or a value of the wrong type is a PipelineError naming the file and the key."""
from __future__ import annotations

from pathlib import Path

from stages.core.errors import PipelineError
from stages.meters.cpu_power import WORLD_GCO2_PER_KWH
from stages.reporting import energy as E
from stages.reporting.hosts import bench_host
from stages.schema import metrics as M

DETECTOR_ORDER = ("float32", "float16", "int8", "int16x8", "dynamic_int8")  # fixed order of every table
RUNTIME_ORDER = ("onnxruntime", "openvino")


def detector_variants(precisions: list[str], runtimes: list[str] = ()) -> list[str]:
    """LiteRT's precisions, then each other runtime's variants, precisions in fixed order."""
    return [p for p in DETECTOR_ORDER if p in precisions] + [
        f"{r}-{p}" for r in RUNTIME_ORDER for p in DETECTOR_ORDER if f"{r}-{p}" in runtimes]


def _entry(doc, variant: str, path: Path):
    if variant not in doc.root:
        raise PipelineError(f"{path}: missing key '{variant}'")
    return doc.root[variant]


def load_detector(root: Path, variants: list[str], grid: float = WORLD_GCO2_PER_KWH,
                  host: str | None = None) -> tuple[dict[str, dict], dict]:
    """Rows of eval + bench (of `host`) + convert + agreement per variant (energy and carbon at
    `grid` gCO2e/kWh), and the bench stage's machine record."""
    agree_path = root / "detector" / "agreement.json"
    agreement = M.read(agree_path, M.AgreementFile)
    rows, machine = {}, {}
    bench_dir = bench_host(root / "detector" / "bench", host)
    for v in variants:
        ev_path, bench_path = root / "detector" / "eval" / f"{v}.json", bench_dir / f"{v}.json"
        row = M.read(ev_path, M.DetEval).model_dump()
        if row["has_ground_truth"] and row["AP"] is None:  # AP_small etc. may be null (-1)
            raise PipelineError(f"{ev_path}: 'AP' is null although has_ground_truth is true")
        bench = M.read(bench_path, M.DetBench).model_dump()
        machine, _ = bench.pop("machine"), bench.pop("num_images")  # same images as eval
        figs = {"energy_j_per_image": bench.pop("energy_invoke"),
                "energy_j_per_image_e2e": bench.pop("energy_e2e")}
        conv = M.read(root / "detector" / "convert" / f"{v}.json", M.DetConvert).compress_energy
        row.update(bench, **_entry(agreement, v, agree_path).model_dump(),
                   **E.fields(figs, "energy_j_per_image_e2e", conv.model_dump()))
        rows[v] = row
    return E.derive(rows, "detector", grid), machine
