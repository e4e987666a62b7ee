"""Energy figures: energy per inference by variant (bars, method in the title) and accuracy
against energy per inference (Pareto front marked), for the detector (the LM's J/token is in
stages/reporting/lm.py's tables)."""
from __future__ import annotations

import plotly.graph_objects as go

from stages.reporting.figures import D, Panel, bars, tradeoff


def method_label(rows: dict[str, dict]) -> str:
    methods = sorted({m for r in rows.values() for m in r["energy_methods"]})
    text = "method: " + " + ".join(methods) + (" (MIXED: not comparable)" if len(methods) > 1 else "")
    if "estimate" in methods:
        text += " · estimate = CPU time × W/core, not a measurement"
    return text


def build(det: dict[str, dict]) -> list[tuple[str, str, go.Figure]]:
    """[(file stem, title, figure)] of the energy figures."""
    has_gt = all(r["has_ground_truth"] for r in det.values())
    acc = D["AP"] if has_gt else D["agreement_mAP"]
    dm = method_label(det)
    return [
        ("detector_energy", "Detector energy per image", bars(
            f"Detector energy per image · {dm} · whiskers: p10–p90", det,
            [Panel(D["energy_j_per_image"]), Panel(D["energy_j_per_image_e2e"])])),
        ("detector_tradeoff_energy", "Detector: accuracy vs energy per image", tradeoff(
            f"Detector: accuracy vs energy per image ({dm})", det,
            D["energy_j_per_image_e2e"], acc, "upper left")),
    ]
