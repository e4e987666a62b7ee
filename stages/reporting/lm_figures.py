"""Plotly figures of the LM rows (stages/reporting/lm.py): per model, LAMBADA accuracy against
decode speed and against size, with 95% intervals, one colour per runtime, one marker per method
chain (both in the legend), each point labelled with its weights, the Pareto front drawn, every
axis labelled with its unit, and one n and one host per figure (mixing them is an error); and,
where pruning ran at several sparsities, accuracy against sparsity per method."""
from __future__ import annotations

import plotly.graph_objects as go

from stages.core.errors import PipelineError
from stages.reporting.geometry import merge_colocated, pareto, place_labels

# Okabe-Ito, colour-blind safe; a runtime keeps its colour in every figure
RUNTIME_COLORS = {"pytorch": "#0072B2", "ort_genai": "#E69F00", "llamacpp": "#009E73", "openvino": "#CC79A7"}
SYMBOLS = ["circle", "diamond", "square", "triangle-up", "x", "star", "cross", "hexagon", "pentagon"]
AXES = {"decode_tokens_per_s": ("decode speed, batch 1 (tokens/s)", False),
        "size_mb": ("size on disk (MB)", True)}
TIMED = {"decode_tokens_per_s"}   # axes measured on a host: one host per figure
SWEEP_COLORS = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00"]   # Okabe-Ito, a method each
SWEEP_NAMES = {"prune": "magnitude (prune)"}   # a method's legend entry, where its name is not the paper's


def _single(rows: list[dict], key: str, what: str, model: str) -> str | int:
    """The one value of `key` the rows share; two on one axis is a one-line error."""
    values = sorted({r[key] for r in rows}, key=str)
    if len(values) != 1:
        raise PipelineError(f"{model}: the rows of one figure have {len(values)} {what} ({values}): "
                            "never on one axis")
    return values[0]


def tradeoff(rows: dict[str, dict], model: str, axis: str, task: str = "LAMBADA") -> go.Figure:
    """Accuracy against one cost: a point per variant labelled with its weights, colour =
    runtime, marker = method chain (both in the legend), one n and one host per figure."""
    mine = {k: r for k, r in rows.items() if r["model"] == model}
    title, cost_lower = AXES[axis]
    n = _single(list(mine.values()), "num_examples", "example counts", model)
    cpu = _single(list(mine.values()), "cpu", "hosts", model) if axis in TIMED else None
    chains = sorted({r["chain"] for r in mine.values()})
    runtimes = sorted({r["runtime"] for r in mine.values()})
    keys = sorted(mine)
    xs, ys = [mine[k][axis] for k in keys], [100 * mine[k]["acc"] for k in keys]
    lows, highs = [100 * mine[k]["acc_ci95"][0] for k in keys], [100 * mine[k]["acc_ci95"][1] for k in keys]
    dx, dy = (max(xs) - min(xs)) or 1.0, (max(highs) - min(lows)) or 1.0
    xrange = [min(xs) - 0.15 * dx, max(xs) + 0.15 * dx]    # room for the labels either side
    yrange = [min(lows) - 0.08 * dy, max(highs) + 0.08 * dy]
    norm = [((x - xrange[0]) / (xrange[1] - xrange[0]), (y - yrange[0]) / (yrange[1] - yrange[0]))
            for x, y in zip(xs, ys)]
    texts = dict(zip(keys, merge_colocated(norm, [mine[k]["weights"] for k in keys])))
    where = dict(zip(keys, place_labels(norm, [texts[k] for k in keys])))
    fig = go.Figure()
    for runtime in runtimes:
        pts = [k for k in keys if mine[k]["runtime"] == runtime]
        fig.add_trace(go.Scatter(
            x=[mine[k][axis] for k in pts], y=[100 * mine[k]["acc"] for k in pts], mode="markers+text",
            text=[texts[k] for k in pts], textposition=[where[k] for k in pts], textfont_size=10,
            marker=dict(color=RUNTIME_COLORS.get(runtime, "#999999"), size=10,
                        symbol=[SYMBOLS[chains.index(mine[k]["chain"]) % len(SYMBOLS)] for k in pts]),
            error_y=dict(type="data", symmetric=False,
                         array=[100 * (mine[k]["acc_ci95"][1] - mine[k]["acc"]) for k in pts],
                         arrayminus=[100 * (mine[k]["acc"] - mine[k]["acc_ci95"][0]) for k in pts], thickness=1),
            hovertext=[f"{mine[k]['variant']}: {100 * mine[k]['acc']:.1f} %" for k in pts], hoverinfo="text",
            name=runtime, showlegend=False))
    for runtime in runtimes:   # the legend: a colour per runtime, a marker per chain
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=runtime, legendgroup="runtime",
                                 legendgrouptitle_text="runtime (colour)",
                                 marker=dict(color=RUNTIME_COLORS.get(runtime, "#999999"), size=10, symbol="circle")))
    for i, chain in enumerate(chains):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=chain, legendgroup="chain",
                                 legendgrouptitle_text="method chain (marker)",
                                 marker=dict(color="#777777", size=10, symbol=SYMBOLS[i % len(SYMBOLS)])))
    front = pareto({k: (r[axis], r["acc"]) for k, r in mine.items()}, cost_lower)
    fig.add_trace(go.Scatter(x=[mine[k][axis] for k in front], y=[100 * mine[k]["acc"] for k in front],
                             mode="lines", line=dict(color="#555555", dash="dot"), name="Pareto front"))
    host = f" · timed on {cpu}" if cpu else ""
    fig.update_layout(
        title=f"{model}: {task} accuracy vs {title.split(' (')[0]}<br><sup>{n} examples per point, 95% "
              f"bootstrap intervals{host}</sup>",
        xaxis=dict(title=title, range=xrange), yaxis=dict(title=f"{task} acc (%)", range=yrange),
        template="plotly_white",
        width=1000, height=620, legend_tracegroupgap=12)
    return fig


def sparsity_sweep(rows: dict[str, dict], model: str, task: str = "LAMBADA") -> go.Figure | None:
    """Accuracy against sparsity, a line per pruning method (one-step unstructured chains on
    PyTorch fp32, see lm.sparsity), each starting at the model's base (0 %); None when fewer
    than two sparsities were run. PyTorch's dense kernels gain no speed from zeros: the figure
    has no speed axis."""
    mine = {k: r for k, r in rows.items() if r["model"] == model and r["runtime"] == "pytorch" and r["bits"] == 32}
    points = {k: r for k, r in mine.items() if r["sparsity"] is not None}
    if len({r["sparsity"] for r in points.values()}) < 2:
        return None
    base = next(r for r in mine.values() if r["chain"] == "base")
    n = _single(list(points.values()) + [base], "num_examples", "example counts", model)
    fig = go.Figure()
    for i, method in enumerate(sorted({r["chain"] for r in points.values()})):
        line = [base] + sorted((r for r in points.values() if r["chain"] == method), key=lambda r: r["sparsity"])
        xs = [0.0] + [100 * r["sparsity"] for r in line[1:]]
        fig.add_trace(go.Scatter(
            x=xs, y=[100 * r["acc"] for r in line], mode="lines+markers", name=SWEEP_NAMES.get(method, method),
            marker=dict(size=9, symbol=SYMBOLS[i % len(SYMBOLS)], color=SWEEP_COLORS[i % len(SWEEP_COLORS)]),
            line=dict(color=SWEEP_COLORS[i % len(SWEEP_COLORS)]),
            error_y=dict(type="data", symmetric=False, thickness=1,
                         array=[100 * (r["acc_ci95"][1] - r["acc"]) for r in line],
                         arrayminus=[100 * (r["acc"] - r["acc_ci95"][0]) for r in line]),
            hovertext=[f"{r['variant']}: {100 * r['acc']:.1f} %" for r in line], hoverinfo="text"))
    fig.update_layout(
        title=f"{model}: {task} accuracy vs unstructured sparsity<br><sup>{n} examples per point, 95% "
              "bootstrap intervals, PyTorch fp32 (dense kernels: zeros give no speed-up)</sup>",
        xaxis=dict(title="weights zeroed in every decoder linear (%)", dtick=10),
        yaxis=dict(title=f"{task} acc (%)", rangemode="tozero"), template="plotly_white",
        width=900, height=560, legend_title_text="pruning method")
    return fig


def build(rows: dict[str, dict], task: str) -> list[tuple[str, str, go.Figure]]:
    """[(file stem, title, figure)] for every model and both trade-offs; `task` names the
    evaluation set as the axis shows it (the offline default is not the official LAMBADA)."""
    items = []
    for model in sorted({r["model"] for r in rows.values()}):
        for axis in AXES:
            items.append((f"lm_{model}_{axis}", f"{model}: accuracy vs {AXES[axis][0].split(' (')[0]}",
                          tradeoff(rows, model, axis, task)))
        if (fig := sparsity_sweep(rows, model, task)) is not None:
            items.append((f"lm_{model}_sparsity", f"{model}: accuracy vs sparsity", fig))
    return items
