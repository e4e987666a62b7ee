"""Plotly figures of the LM rows (stages/reporting/lm.py): per model, LAMBADA accuracy against
decode speed and against size, with 95% intervals, one colour per runtime, one marker per method
chain, the Pareto front drawn, and every axis labelled with its unit and the host it was timed on."""
from __future__ import annotations

import plotly.graph_objects as go

from stages.reporting.geometry import pareto

# Okabe-Ito, colour-blind safe; a runtime keeps its colour in every figure
RUNTIME_COLORS = {"pytorch": "#0072B2", "ort_genai": "#E69F00", "llamacpp": "#009E73", "openvino": "#CC79A7"}
SYMBOLS = ["circle", "diamond", "square", "triangle-up", "x", "star", "cross", "hexagon", "pentagon"]
AXES = {"decode_tokens_per_s": ("decode speed, batch 1 (tokens/s)", False),
        "size_mb": ("size on disk (MB)", True)}


def tradeoff(rows: dict[str, dict], model: str, axis: str, task: str = "LAMBADA") -> go.Figure:
    mine = {k: r for k, r in rows.items() if r["model"] == model}
    title, cost_lower = AXES[axis]
    chains = sorted({r["chain"] for r in mine.values()})
    fig = go.Figure()
    for runtime in sorted({r["runtime"] for r in mine.values()}):
        pts = [r for r in mine.values() if r["runtime"] == runtime]
        fig.add_trace(go.Scatter(
            x=[r[axis] for r in pts], y=[100 * r["acc"] for r in pts], mode="markers+text", name=runtime,
            text=[r["variant"].split(" · ")[0] for r in pts], textposition="top center", textfont_size=10,
            marker=dict(color=RUNTIME_COLORS.get(runtime, "#999999"), size=10,
                        symbol=[SYMBOLS[chains.index(r["chain"]) % len(SYMBOLS)] for r in pts]),
            error_y=dict(type="data", symmetric=False,
                         array=[100 * (r["acc_ci95"][1] - r["acc"]) for r in pts],
                         arrayminus=[100 * (r["acc"] - r["acc_ci95"][0]) for r in pts], thickness=1),
            hovertext=[f"{r['variant']}: {100 * r['acc']:.1f} %" for r in pts], hoverinfo="text"))
    front = pareto({k: (r[axis], r["acc"]) for k, r in mine.items()}, cost_lower)
    fig.add_trace(go.Scatter(x=[mine[k][axis] for k in front], y=[100 * mine[k]["acc"] for k in front],
                             mode="lines", line=dict(color="#555555", dash="dot"), name="Pareto front"))
    cpu = next(iter(mine.values()))["cpu"]
    n = next(iter(mine.values()))["num_examples"]
    fig.update_layout(
        title=f"{model}: {task} accuracy vs {title.split(' (')[0]}<br><sup>{n} examples, 95% bootstrap "
              f"intervals · timed on {cpu} · colour: runtime, marker: method chain</sup>",
        xaxis_title=title, yaxis_title=f"{task} acc (%)", template="plotly_white",
        width=1000, height=620, legend_title="runtime")
    return fig


def build(rows: dict[str, dict], task: str) -> list[tuple[str, str, go.Figure]]:
    """[(file stem, title, figure)] for every model and both trade-offs; `task` names the
    evaluation set as the axis shows it (the offline default is not the official LAMBADA)."""
    items = []
    for model in sorted({r["model"] for r in rows.values()}):
        for axis in AXES:
            items.append((f"lm_{model}_{axis}", f"{model}: accuracy vs {AXES[axis][0].split(' (')[0]}",
                          tradeoff(rows, model, axis, task)))
    return items
