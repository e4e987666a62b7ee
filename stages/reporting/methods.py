"""The compression-method axis of the LM report (PyTorch rows): a method x bits table, one
row per variant with what the method cost and left, and an accuracy-vs-size figure with
every method and its Pareto front. Pruned models are stored dense (zeros included): the
figure plots each at its dense size and, hollow, at its bitmask-sparse size."""
from __future__ import annotations

from stages.reporting.geometry import pareto

NOTE = ("Pruned models are dense float32 tensors with zeros: not smaller on disk and not faster "
        "with dense CPU kernels.{spread} "
        "\"sparse MB\" is the size with each pruned matrix stored as a bitmask plus its nonzero "
        "values. GPTQ after pruning does not keep the zeros (its updates refill them). "
        "Compression time and energy sum every step of a chain.")


def note(llm: dict[str, dict]) -> str:
    """NOTE, with the decode range of the float32 models of the base's size (the base and its
    pruned copies run the same dense work, so their spread is the run-to-run noise)."""
    base = llm.get("base")
    if base is None:
        return NOTE.format(spread="")
    same = {v: r["decode_tokens_per_s"] for v, r in llm.items()
            if r["bits"] >= 16 and abs(r["size_mb"] - base["size_mb"]) < 0.01 * base["size_mb"]
            and r.get("decode_tokens_per_s") is not None}
    if len(same) < 2:
        return NOTE.format(spread="")
    names = ", ".join(f"`{v}`" for v in same)
    return NOTE.format(spread=f" The {len(same)} float32 models of the base's size ({names}) decode at "
                       f"{min(same.values()):.1f}–{max(same.values()):.1f} tok/s: one dense workload, "
                       "so that spread is run-to-run noise on the benchmark machine, not an effect of sparsity.")


def _pct(r: dict) -> str:
    lo, hi = r["acc_ci95"]
    return f"{r['acc'] * 100:.1f} [{lo * 100:.1f}, {hi * 100:.1f}]"


def _n(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def grid(llm: dict[str, dict]) -> list[str]:
    """Methods down, bit widths across; a cell is LAMBADA acc % [95% CI] (variant)."""
    widths = sorted({r["bits"] for r in llm.values()}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in llm.values()))
    head = ["method"] + [("fp32" if b >= 16 else f"int{b}") for b in widths]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for m in methods:
        cells = []
        for b in widths:
            hit = [(v, r) for v, r in llm.items() if r["method"] == m and r["bits"] == b]
            cells.append("; ".join(f"{_pct(r)} (`{v}`)" for v, r in hit) or "")
        lines.append("| " + " | ".join([m] + cells) + " |")
    return lines


def detail(llm: dict[str, dict]) -> list[str]:
    head = ("variant", "method", "bits", "sparsity", "LAMBADA acc (%) [95% CI]", "ppl", "size MB",
            "sparse MB", "decode tok/s", "prefill tok/s", "compression s", "compression J")
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for v, r in llm.items():
        lines.append("| " + " | ".join([
            f"`{v}`", r["method"], str(r["bits"]), f"{r['sparsity']:.2f}", _pct(r), f"{r['ppl']:.3g}",
            f"{r['size_mb']:.0f}", _n(r.get("size_sparse_mb"), ".0f"), f"{r['decode_tokens_per_s']:.1f}",
            f"{r['prefill_tokens_per_s']:.0f}", _n(r.get("compress_time_s"), ".0f"),
            _n(r.get("compress_energy_j"), ".0f")]) + " |")
    return lines


def section(llm: dict[str, dict]) -> list[str]:
    return (["## Language model: compression methods and chains (PyTorch)", "", "### Method × bits", ""]
            + grid(llm) + ["", "### Every variant", ""] + detail(llm) + ["", note(llm), ""])


def points(llm: dict[str, dict]) -> dict[str, tuple[float, float]]:
    """(size MB, acc %) per variant, plus `<v> (sparse)` at its sparse size where it has one."""
    pts = {v: (r["size_mb"], r["acc"] * 100) for v, r in llm.items()}
    pts.update({f"{v} (sparse)": (r["size_sparse_mb"], r["acc"] * 100)
                for v, r in llm.items() if r.get("size_sparse_mb")})
    return pts


def figure(llm: dict[str, dict]):
    import plotly.graph_objects as go

    pts = points(llm)
    front = pareto(pts, cost_lower=True)
    methods = list(dict.fromkeys(r["method"] for r in llm.values()))
    palette = ["#555555", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442"]
    color = {m: palette[i % len(palette)] for i, m in enumerate(methods)}
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[pts[v][0] for v in front], y=[pts[v][1] for v in front], mode="lines",
                             name="Pareto front", line=dict(color="#888", dash="dot")))
    for v, (x, y) in pts.items():
        base = v.removesuffix(" (sparse)")
        m = llm[base]["method"]
        fig.add_trace(go.Scatter(
            x=[x], y=[y], mode="markers+text", text=[v], textposition="top center", name=f"{m} ({v})",
            marker=dict(size=13, color=color[m], symbol="circle-open" if v != base else "circle",
                        line=dict(width=3 if v in front else 1, color=color[m] if v != base else "black"))))
    fig.update_xaxes(title_text="size (MB): on disk; hollow = pruned matrices stored sparse", rangemode="tozero")
    fig.update_yaxes(title_text="LAMBADA acc (%)", rangemode="tozero")
    fig.update_layout(title="LM compression methods: LAMBADA acc vs size (colour = method, front dotted)",
                      template="plotly_white")
    return fig


def figures(llm: dict[str, dict]) -> list[tuple[str, str, object]]:
    return [("llm_methods_size", "LM compression methods: accuracy vs size (Pareto front)", figure(llm))]
