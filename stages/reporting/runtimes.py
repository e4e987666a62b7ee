"""The runtime axis of the LM report: PyTorch rows (lm_eval/lm_bench) beside the ONNX Runtime
GenAI rows (lm_eval_ort/lm_bench_ort), one row per (runtime, precision), the summary keys
every LM variant carries, a table with each runtime's speed-up over its own fp32, and the
accuracy-vs-speed/size figures (colour = runtime, marker = precision, Pareto front)."""
from __future__ import annotations

from stages.meters.bandwidth import fraction

KEYS = ("runtime", "method", "bits", "acc", "acc_ci95", "decode_tokens_per_s",
        "prefill_tokens_per_s", "size_mb", "peak_rss_mb", "weight_bytes_per_token",
        "bandwidth_fraction", "energy_method", "energy_j_per_token_decode",
        "energy_j_per_token_decode_p10_p90", "energy_j_per_token_prefill",
        "energy_j_per_token_prefill_p10_p90", "energy_j_per_example", "energy_j_per_example_p10_p90",
        "power_w", "idle_power_w", "compress_energy_j", "compress_gco2e", "break_even_inferences",
        "gco2e_per_1000", "compress_time_s")
LABELS = ("runtime", "method", "bits", "sparsity", "peak_rss_mb_reason", "bench_cpu")   # descriptive, no direction
DIRECTIONS = {"peak_rss_mb": False, "weight_bytes_per_token": False, "bandwidth_fraction": True}
RUNTIME_COLORS = {"torch": "#555555", "onnxruntime": "#0072B2", "llama.cpp": "#D55E00",
                  "openvino": "#009E73"}
PRECISION_SYMBOLS = {"fp32": "circle", "fp16": "circle-dot", "int8": "square", "int4": "diamond",
                     "int2": "x"}
NOTE = ("PyTorch rows: lm_eval/lm_bench on eval_lm.limit examples; ONNX Runtime, llama.cpp and "
        "OpenVINO rows: lm_eval_*/lm_bench_* on the first lm_runtimes.limit examples of the same set. "
        "Weight bytes per token: every weight a decode step reads (the tied embedding/LM head "
        "table once, as the head). Bandwidth fraction = decode tok/s ÷ (triad bandwidth measured "
        "in the same bench stage ÷ weight bytes per token); PyTorch rows use the other runtimes' "
        "bandwidth figure when timed on the same CPU (else n/a). The triad is single-threaded "
        "numpy, so it understates what 2 threads stream: a fraction above 1 means that, not a "
        "runtime beating the memory bus.")
NO_RSS = "not measured: lm_bench (PyTorch) records no peak RSS"


def torch_rows(llm: dict[str, dict], bw: float | None, bw_cpu: str | None = None) -> dict[str, dict]:
    """The PyTorch rows with the runtime keys. A bench file since 2026-12-03 carries its own
    peak RSS (a fresh process per variant), weight bytes per token and bandwidth fraction (its
    own triad). Older files: bytes = the weights in memory (param_mb: the tied table once, read
    as the LM head), bandwidth from the other runtimes' bench run, used only for rows timed on
    that same CPU (`bw_cpu`; None: any), and no RSS."""
    out = {}
    for v, r in llm.items():
        per_token = r.get("weight_bytes_per_token") or int(r["param_mb"] * 1e6)
        same = bw_cpu is None or r.get("bench_cpu") == bw_cpu
        frac = r.get("bandwidth_fraction")
        if frac is None and bw and same:
            frac = fraction(r["decode_tokens_per_s"], bw, per_token)
        rss = r.get("peak_rss_mb")
        out[v] = {**r, "runtime": "torch", "method": r["method"], "peak_rss_mb": rss,
                  **({"peak_rss_mb_reason": NO_RSS} if rss is None else {}),
                  "weight_bytes_per_token": per_token, "bandwidth_fraction": frac}
    return out


def precision(row: dict) -> str:
    return {32: "fp32", 16: "fp16"}.get(row["bits"], f"int{row['bits']}")


def summary_entries(rows: dict[str, dict]) -> dict[str, dict]:
    """The keys every LM variant entry of metrics/summary.json carries."""
    return {v: {**{k: r.get(k) for k in KEYS + ("peak_rss_mb_reason",) if k in r or k in KEYS},
                "sparsity": r.get("sparsity", 0.0),  # every variant so far is dense
                "bench_cpu": r.get("bench_cpu")}     # the CPU its speed was timed on
            for v, r in rows.items()}


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def table(rows: dict[str, dict]) -> str:
    """One row per (runtime, precision, method) with decode ÷ the runtime's own fp32 decode."""
    fp32 = {}   # (runtime, CPU) -> decode tok/s of its widest uncompressed row (llama.cpp: F16)
    for r in sorted(rows.values(), key=lambda r: r["bits"]):
        if r["bits"] >= 16 and r["method"] == "none":
            fp32[r["runtime"], r.get("bench_cpu")] = r["decode_tokens_per_s"]
    head = ("runtime", "precision", "method", "variant", "LAMBADA acc (%)", "decode tok/s",
            "÷ own fp32/fp16 decode", "prefill tok/s", "size (MB)", "peak RSS (MB)",
            "weight MB read / token", "bandwidth fraction", "timed on")
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for v, r in sorted(rows.items(), key=lambda kv: (kv[1]["runtime"], -kv[1]["bits"], kv[0])):
        ref = fp32.get((r["runtime"], r.get("bench_cpu")))
        lines.append("| " + " | ".join([
            r["runtime"], precision(r), r["method"] + (f" ({r['head_type']} head)" if r.get("head_type") else ""),
            f"`{v}`", _fmt(r["acc"] * 100, ".1f"),
            _fmt(r["decode_tokens_per_s"], ".1f"),
            _fmt(r["decode_tokens_per_s"] / ref, ".2f") + "×" if ref else "n/a",
            _fmt(r["prefill_tokens_per_s"], ".0f"), _fmt(r["size_mb"], ".0f"),
            _fmt(r.get("peak_rss_mb"), ".0f"), _fmt(r["weight_bytes_per_token"] / 1e6, ".0f"),
            _fmt(r.get("bandwidth_fraction"), ".2f"), r.get("bench_cpu") or "n/a"]) + " |")
    cpus = sorted({r.get("bench_cpu") or "n/a" for r in rows.values()})
    if len(cpus) > 1:
        lines += ["", f"**Timed on {len(cpus)} different CPUs** ({', '.join(cpus)}): compare speeds only "
                  "between rows of one CPU; each ratio uses the fp32/fp16 row of its own runtime and CPU."]
    return "\n".join(lines)


def csv_text(rows: dict[str, dict]) -> str:
    cols = ("runtime", "method", "bits", "acc", "decode_tokens_per_s", "prefill_tokens_per_s",
            "size_mb", "peak_rss_mb", "bandwidth_fraction")
    lines = [",".join(("variant",) + cols)]
    lines += [",".join([v] + ["" if r.get(c) is None else str(r[c]) for c in cols])
              for v, r in rows.items()]
    return "\n".join(lines) + "\n"


def scatter(title: str, rows: dict[str, dict], x: str, x_label: str, cost_lower: bool):
    """Accuracy vs a cost; colour = runtime, marker = precision (open: RTN), dotted line = Pareto front."""
    import plotly.graph_objects as go

    from stages.reporting.geometry import pareto

    pts = {v: (r[x], r["acc"] * 100) for v, r in rows.items() if r.get(x) is not None}
    front = pareto(pts, cost_lower=cost_lower)
    fig = go.Figure()
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[pts[v][0] for v in front], y=[pts[v][1] for v in front],
                                 mode="lines", name="Pareto front", line=dict(color="#888", dash="dot")))
    for v, (cx, acc) in pts.items():
        r = rows[v]
        fig.add_trace(go.Scatter(
            x=[cx], y=[acc], mode="markers+text", text=[v], textposition="top center",
            name=f"{r['runtime']} {precision(r)} {r['method']} ({v})", marker=dict(
                size=15, color=RUNTIME_COLORS.get(r["runtime"], "#999"),
                symbol=PRECISION_SYMBOLS.get(precision(r), "circle") + ("-open" if r["method"] == "rtn" else ""),
                line=dict(width=2 if v in front else 1, color="black"))))
    fig.update_xaxes(title_text=x_label, rangemode="tozero")
    fig.update_yaxes(title_text="LAMBADA acc (%)", rangemode="tozero")
    fig.update_layout(title=title, template="plotly_white", legend_title_text="runtime precision")
    return fig


def figures(rows: dict[str, dict]) -> list[tuple[str, str, object]]:
    return [("llm_runtimes_speed", "LM runtimes: accuracy vs decode speed", scatter(
                "LM runtimes: LAMBADA acc vs decode tok/s (colour runtime, marker precision)",
                rows, "decode_tokens_per_s", "decode tokens/s (batch 1)", cost_lower=False)),
            ("llm_runtimes_size", "LM runtimes: accuracy vs size", scatter(
                "LM runtimes: LAMBADA acc vs size on disk (colour runtime, marker precision)",
                rows, "size_mb", "size on disk (MB)", cost_lower=True))]
