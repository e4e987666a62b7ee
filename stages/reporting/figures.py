"""Plotly figures of the aggregated metrics (pure builders; stages/reporting/export.py writes)."""
from __future__ import annotations

from typing import NamedTuple

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stages.reporting.specs import DETECTOR_METRICS, PUBLISHED_MAP, Metric
from stages.reporting.geometry import label_positions, pareto
from stages.reporting.tables import label

# One colour per precision, the same in every figure (Okabe-Ito, colour-blind safe).
COLORS = {"float32": "#0072B2", "float16": "#56B4E9", "int8": "#009E73", "int16x8": "#F0E442",
          "dynamic_int8": "#CC79A7", "base": "#555555", "int4": "#E69F00", "int2": "#D55E00"}
OTHER_COLOR = "#999999"
SYMBOLS = {"float32": "circle", "float16": "diamond", "int8": "square", "int16x8": "square-open",
           "dynamic_int8": "triangle-up", "base": "circle", "int4": "diamond", "int2": "x"}
# Detector rows: colour = runtime, marker shape (bar pattern) = precision.
RUNTIME_COLORS = {"litert": "#0072B2", "onnxruntime": "#E69F00", "openvino": "#009E73"}
PATTERNS = {"float32": "", "float16": ".", "int8": "/", "int16x8": "\\", "dynamic_int8": "x"}
D = {m.key: m for m in DETECTOR_METRICS}


class Panel(NamedTuple):
    metric: Metric
    whisker: Metric | None = None          # upper whisker (p90 over a median)
    ref: tuple[float, str] | None = None   # (value in display units, label)


def color(variant: str, row: dict | None = None) -> str:
    if row and "runtime" in row:
        return RUNTIME_COLORS.get(row["runtime"], OTHER_COLOR)
    return COLORS.get(variant, COLORS.get(variant.rpartition("-")[2], OTHER_COLOR))  # rtn-int4: int4's


def symbol(variant: str, row: dict | None = None) -> str:
    key = row["precision"] if row and "precision" in row else variant
    return SYMBOLS.get(key, "triangle-down" if key.startswith("rtn-") else "circle")


def _value(row: dict, m: Metric) -> float | None:
    v = row.get(m.key)
    return None if v is None or (m.scale != 1 and v < 0) else v * m.scale


def interval(row: dict, m: Metric) -> list[float] | None:
    """The 95% interval (energy: p10–p90 over windows) in display units, or None."""
    ci = row.get(f"{m.key}_ci95") if m.ci else row.get(f"{m.key}_p10_p90") if m.spread else None
    return [ci[0] * m.scale, ci[1] * m.scale] if ci else None


def bars(title: str, rows: dict[str, dict], panels: list[Panel], k=None) -> go.Figure:
    """One panel per metric, variants on x in the rows' order, one bar colour per variant."""
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.1, subplot_titles=[
        "higher is better" if p.metric.higher_is_better else "lower is better" for p in panels])
    for col, p in enumerate(panels, start=1):
        top = 0.0
        for variant, row in rows.items():
            v = _value(row, p.metric)
            hi = _value(row, p.whisker) if p.whisker else None
            err = dict(type="data", symmetric=False, array=[hi - v], arrayminus=[0],
                       thickness=1.5, width=6) if hi is not None and v is not None else None
            if v is not None and (ci := interval(row, p.metric)):
                err, hi = dict(type="data", symmetric=False, array=[ci[1] - v],
                               arrayminus=[v - ci[0]], thickness=1.5, width=6), ci[1]
            fig.add_trace(go.Bar(
                x=[variant], y=[v if v is not None else 0], name=variant, legendgroup=variant,
                showlegend=col == 1, marker_color=color(variant, row), error_y=err,
                marker_pattern_shape=PATTERNS.get(row.get("precision"), ""),
                text=[format(v, p.metric.fmt) if v is not None else "n/a"],
                textposition="inside" if (p.whisker or p.ref or err) and v else "outside", cliponaxis=False,
                insidetextanchor="end"), row=1, col=col)
            top = max(top, hi or 0, v or 0, p.ref[0] if p.ref else 0)
        fig.update_yaxes(title_text=label(p.metric, k), range=[0, top * 1.15 or 1], row=1, col=col)
        fig.update_xaxes(title_text="variant", categoryorder="array",
                         categoryarray=list(rows), row=1, col=col)
        if p.ref:
            fig.add_hline(y=p.ref[0], line_dash="dash", line_color="black", row=1, col=col,
                          annotation_text=p.ref[1], annotation_position="top right")
    fig.update_layout(title=title, barmode="overlay", legend_title_text="variant",
                      template="plotly_white")
    return fig


def tradeoff(title: str, rows: dict[str, dict], x: Metric, y: Metric, better: str) -> go.Figure:
    """Accuracy against a cost, one marker per variant; `better` names the better corner."""
    fig = go.Figure()
    xs = [_value(r, x) or 0 for r in rows.values()]
    ys = [_value(r, y) or 0 for r in rows.values()]
    tops = [(interval(r, y) or [0, 0])[1] for r in rows.values()]
    xmax, ymax = max(xs) * 1.15 or 1, max(ys + tops) * 1.12 or 1
    where = label_positions([(a / xmax, b / ymax) for a, b in zip(xs, ys)])
    pts = {v: (_value(r, x), _value(r, y)) for v, r in rows.items()
           if _value(r, x) is not None and _value(r, y) is not None}
    front = pareto(pts, cost_lower=not x.higher_is_better)
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[pts[v][0] for v in front], y=[pts[v][1] for v in front],
                                 mode="lines", name="Pareto front", line=dict(color="#888", dash="dot")))
    for (variant, row), text_pos in zip(rows.items(), where):
        ci, v = interval(row, y), _value(row, y)
        err = dict(type="data", symmetric=False, array=[ci[1] - v], arrayminus=[v - ci[0]]) \
            if ci and v is not None else None
        fig.add_trace(go.Scatter(
            x=[_value(row, x)], y=[v], name=variant, mode="markers+text", error_y=err,
            text=[variant], textposition=text_pos, cliponaxis=False,
            marker=dict(size=16, color=color(variant, row), symbol=symbol(variant, row),
                        line=dict(width=1, color="black"))))
    fig.add_annotation(text=f"better: {better}", xref="paper", yref="paper", showarrow=False,
                       x=1 if "right" in better else 0, y=1.06, font=dict(color="#444"))
    fig.update_xaxes(title_text=label(x), range=[0, xmax])
    fig.update_yaxes(title_text=label(y), range=[0, ymax])
    fig.update_layout(title=title, legend_title_text="variant", template="plotly_white")
    return fig


def build_all(det: dict[str, dict]) -> list[tuple[str, str, go.Figure]]:
    """[(file stem, title, figure)]: size, accuracy, speed per family, then two trade-offs each."""
    has_gt = all(r["has_ground_truth"] for r in det.values())
    acc, acc50 = (D["AP"], D["AP50"]) if has_gt else (D["agreement_mAP"], D["agreement_AP50"])
    acc_title = ("Detector accuracy: COCO AP" if has_gt else
                 "Detector accuracy: agreement with float32 (no ground truth, not COCO mAP)")
    ref = (PUBLISHED_MAP, f"published float: {PUBLISHED_MAP:g} mAP") if has_gt else None
    items = [
        ("detector_size", "Detector model size", bars(
            "Detector model size (files on disk)", det, [Panel(D["size_mb"])])),
        ("detector_accuracy", acc_title, bars(acc_title + " · error bars: 95% interval", det, [Panel(acc, ref=ref), Panel(acc50)])),
        ("detector_speed", "Detector speed", bars(
            "Detector speed (bar = median, whisker = p90)", det,
            [Panel(D["latency_ms_median"], whisker=D["latency_ms_p90"]),
             Panel(D["images_per_s"])])),
        ("detector_tradeoff_size", "Detector: accuracy vs size", tradeoff(
            "Detector: accuracy vs size (colour: runtime, shape: precision)", det, D["size_mb"],
            acc, "upper left")),
        ("detector_tradeoff_speed", "Detector: accuracy vs latency", tradeoff(
            "Detector: accuracy vs latency (colour: runtime, shape: precision)", det,
            D["latency_ms_median"], acc, "upper left")),
    ]
    return items
