"""Plotly figures of the aggregated metrics (pure builders; stages/reporting/export.py writes)."""
from __future__ import annotations

import math
from typing import NamedTuple

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stages.core.errors import PipelineError
from stages.reporting.specs import DETECTOR_METRICS, PUBLISHED_MAP, Metric
from stages.reporting.geometry import merge_colocated, pareto, place_labels
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


def wide(values: list[float]) -> bool:
    """A log axis where one value dwarfs the rest (more than 10x the smallest positive one)."""
    pos = [v for v in values if v and v > 0]
    return len(pos) > 1 and max(pos) > 10 * min(pos)


def bars(title: str, rows: dict[str, dict], panels: list[Panel], k=None) -> go.Figure:
    """One panel per metric, variants on x in the rows' order, one bar colour per variant. The
    value sits above its bar's whisker (never on it); a panel whose values span more than 10x is
    on a log axis, so no variant flattens the others."""
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.1, subplot_titles=[
        "higher is better" if p.metric.higher_is_better else "lower is better" for p in panels])
    for col, p in enumerate(panels, start=1):
        tops = {}
        log = wide([_value(r, p.metric) for r in rows.values()]) and not p.ref
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
                marker_pattern_shape=PATTERNS.get(row.get("precision"), "")), row=1, col=col)
            tops[variant] = (max(hi or 0, v or 0), format(v, p.metric.fmt) if v is not None else "n/a")
        top = max([t for t, _ in tops.values()] + [p.ref[0] if p.ref else 0])
        for variant, (y, text) in tops.items():   # the value above the whisker's end
            fig.add_annotation(x=variant, y=math.log10(y) if log and y > 0 else y, text=text, showarrow=False,
                               yshift=9, font=dict(size=11), row=1, col=col)
        if log:
            low = min(t for t, _ in tops.values() if t > 0)
            fig.update_yaxes(type="log", range=[math.log10(low) - 0.3, math.log10(top) + 0.25], row=1, col=col)
        else:
            fig.update_yaxes(range=[0, top * 1.15 or 1], row=1, col=col)
        fig.update_yaxes(title_text=label(p.metric, k) + (" (log scale)" if log else ""), row=1, col=col)
        fig.update_xaxes(title_text="variant", categoryorder="array",
                         categoryarray=list(rows), row=1, col=col)
        if p.ref:
            fig.add_hline(y=p.ref[0], line_dash="dash", line_color="black", row=1, col=col,
                          annotation_text=p.ref[1], annotation_position="top right")
    fig.update_layout(title=title, barmode="overlay", legend_title_text="variant",
                      template="plotly_white")
    return fig


def tradeoff(title: str, rows: dict[str, dict], x: Metric, y: Metric, better: str) -> go.Figure:
    """Accuracy against a cost, one marker per variant; `better` names the better corner. The
    axes fit the data (the cost on a log axis where it spans more than 10x, accuracy from just
    below its lowest interval), and labels are placed so that none covers another."""
    fig = go.Figure()
    pts = {v: (_value(r, x), _value(r, y)) for v, r in rows.items()
           if _value(r, x) is not None and _value(r, y) is not None}
    log = wide([a for a, _ in pts.values()])
    lows = [(interval(rows[v], y) or [b, b])[0] for v, (_, b) in pts.items()]
    highs = [(interval(rows[v], y) or [b, b])[1] for v, (_, b) in pts.items()]
    ylo, yhi = min(lows), max(highs)
    pad = (yhi - ylo) * 0.12 or 1.0
    yrange = [max(0.0, ylo - pad), yhi + pad]
    tx = (lambda a: math.log10(a)) if log else (lambda a: a)   # noqa: E731
    xs = [tx(a) for a, _ in pts.values()]
    xrange = [min(xs) - 0.12 * ((max(xs) - min(xs)) or 1), max(xs) + 0.25 * ((max(xs) - min(xs)) or 1)]
    norm = [((tx(a) - xrange[0]) / (xrange[1] - xrange[0]), (b - yrange[0]) / (yrange[1] - yrange[0]))
            for a, b in pts.values()]
    texts = dict(zip(pts, merge_colocated(norm, list(pts))))
    where = dict(zip(pts, place_labels(norm, list(texts.values()), char_w=0.011, line_h=0.05, marker=0.02,
                                       drop=True)))   # every variant is in the legend
    front = pareto(pts, cost_lower=not x.higher_is_better)
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[pts[v][0] for v in front], y=[pts[v][1] for v in front],
                                 mode="lines", name="Pareto front", line=dict(color="#888", dash="dot")))
    for variant, row in rows.items():
        ci, v = interval(row, y), _value(row, y)
        err = dict(type="data", symmetric=False, array=[ci[1] - v], arrayminus=[v - ci[0]]) \
            if ci and v is not None else None
        fig.add_trace(go.Scatter(
            x=[_value(row, x)], y=[v], name=variant, mode="markers+text", error_y=err,
            text=[texts.get(variant, variant) if where.get(variant) else ""],
            textposition=where.get(variant) or "middle right", cliponaxis=False,
            marker=dict(size=14, color=color(variant, row), symbol=symbol(variant, row),
                        line=dict(width=1, color="black"))))
    fig.add_annotation(text=f"better: {better}", xref="paper", yref="paper", showarrow=False,
                       x=1 if "right" in better else 0, y=1.06, font=dict(color="#444"))
    fig.update_xaxes(title_text=label(x) + (" (log scale)" if log else ""), type="log" if log else "linear",
                     range=xrange)
    fig.update_yaxes(title_text=label(y), range=yrange)
    fig.update_layout(title=title, legend_title_text="variant", template="plotly_white")
    return fig


def build_all(det: dict[str, dict]) -> list[tuple[str, str, go.Figure]]:
    """[(file stem, title, figure)]: size, accuracy, speed per family, then two trade-offs each."""
    has_gt = all(r["has_ground_truth"] for r in det.values())
    acc, acc50 = (D["AP"], D["AP50"]) if has_gt else (D["agreement_mAP"], D["agreement_AP50"])
    n = sorted({r["num_images"] for r in det.values()})
    if len(n) != 1:
        raise PipelineError(f"detector variants scored on different image counts ({n}): never on one axis")
    images = f"{n[0]} images"
    acc_title = (f"Detector accuracy: COCO AP on {images}" if has_gt else
                 f"Detector accuracy: agreement with float32 on {images} (no ground truth, not COCO mAP)")
    ref = (PUBLISHED_MAP, f"published float: {PUBLISHED_MAP:g} mAP") if has_gt else None
    items = [
        ("detector_size", "Detector model size", bars(
            "Detector model size (files on disk)", det, [Panel(D["size_mb"])])),
        ("detector_accuracy", acc_title, bars(acc_title + " · error bars: 95% interval", det, [Panel(acc, ref=ref), Panel(acc50)])),
        ("detector_speed", "Detector speed", bars(
            "Detector speed, one host (bar = median, whisker = p90)", det,
            [Panel(D["latency_ms_median"], whisker=D["latency_ms_p90"]),
             Panel(D["images_per_s"])])),
        ("detector_tradeoff_size", "Detector: accuracy vs size", tradeoff(
            f"Detector: accuracy ({images}) vs size · colour: runtime, shape: precision", det, D["size_mb"],
            acc, "upper left")),
        ("detector_tradeoff_speed", "Detector: accuracy vs latency", tradeoff(
            f"Detector: accuracy ({images}) vs latency, one host · colour: runtime, shape: precision", det,
            D["latency_ms_median"], acc, "upper left")),
    ]
    return items
