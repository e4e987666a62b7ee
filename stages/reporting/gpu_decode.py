"""The gpu_decode rows of the GPU report: batch-1 decode against the HBM bound, one table per
host (metrics/gpu/<host>/decode/<row>.json, one file per row: no row overrides another)."""
from __future__ import annotations

from pathlib import Path

from stages.schema import metrics as M, metrics_gpu as MG

NOTE = ("Batch-1 greedy decode of the fused engines (stages/runtimes/fused_llama.py, fused_opt.py: fused "
        "projections, static KV cache, one compiled step replayed as a CUDA graph), random "
        "weights in a published shape (accuracy n/a), prefill outside the timed windows. Bound = the "
        "larger of a device-to-device copy (read + write bytes) and a 4 GB read, over the bytes a "
        "step reads, measured in the same process; J/token from NVML, gross. One table per host.")


def load(folder: Path) -> dict[str, dict[str, dict]]:
    """host -> row name -> row (validated)."""
    out: dict[str, dict[str, dict]] = {}
    for f in sorted(folder.glob("*/decode/*.json")):
        out.setdefault(f.parent.parent.name, {})[f.stem] = M.read(f, MG.DecodeRow).model_dump()
    return out


def libraries(machine: dict) -> str:
    """The versions a row ran with, as the report prints them."""
    return ", ".join(f"{k} {machine[k]}" for k in ("torch", "triton", "gemlite") if machine.get(k))


def tables(folder: Path) -> list[str]:
    lines = []
    for host, rows in load(folder).items():
        first = next(iter(rows.values()))
        libs = {name: libraries(r["machine"]) for name, r in rows.items()}
        same = len(set(libs.values())) == 1
        lines += [f"Host `{host}`: {first['gpu']}, driver {first['machine'].get('driver')}, "
                  f"CUDA {first['machine'].get('cuda')}"
                  + (f", {libs[next(iter(rows))]}." if same else "; libraries differ between rows (last column)."), "",
                  "| row | weights | head | int4 kernel | tok/s | bound tok/s | fraction | J/token "
                  "| MB read/token | kernels/token | kernel-busy | GPU MB |" + ("" if same else " libraries |"),
                  "|" + "---|" * (12 if same else 13)]
        for name, r in rows.items():
            p = r["profile"] or {}
            kernel = r["kernel"] if 4 in (r["weights"], r["head"]) else "–"
            lines.append(
                f"| `{name}` | {'int4' if r['weights'] == 4 else 'bf16'} | {'int4' if r['head'] == 4 else 'bf16'} "
                f"| {kernel} | {r['tokens_per_s']:.1f} | {r['bound_tokens_per_s']:.0f} "
                f"| {r['bandwidth_fraction']:.3f} | {r['energy']['j_per_unit']:.3f} "
                f"| {r['weight_bytes_per_token'] / 1e6:.0f} | {p.get('kernels_per_token', float('nan')):.0f} "
                f"| {p.get('kernel_time_fraction', float('nan')):.2f} | {r['gpu_memory_mb']:.0f} |"
                + ("" if same else f" {libs[name]} |"))
        lines.append("")
    return lines


GOALS = {"bf16": 0.65, "int4": 0.45}   # the fractions of the bound a batch-1 decode should reach


def figure(folder: Path):
    """(stem, title, figure) of the decode rows: each row's fraction of its bound as a bar, one
    panel per host (hosts never share an axis), with the bf16 and int4 goals as lines; None
    without rows."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    hosts = load(folder)
    if not hosts:
        return None
    sizes = [len(rows) + 2 for rows in hosts.values()]
    fig = make_subplots(rows=len(hosts), cols=1, row_heights=[s / sum(sizes) for s in sizes],
                        vertical_spacing=0.12, subplot_titles=[f"host {h}" for h in hosts])
    colors = {"bf16": "#4c78a8", "int4": "#f58518"}
    for i, rows in enumerate(hosts.values(), start=1):
        names = sorted(rows, key=lambda n: rows[n]["bandwidth_fraction"])
        kind = ["int4" if rows[n]["weights"] == 4 else "bf16" for n in names]
        fig.add_trace(go.Bar(
            y=names, x=[rows[n]["bandwidth_fraction"] for n in names], orientation="h",
            marker_color=[colors[k] for k in kind], showlegend=False,
            text=[f"{rows[n]['tokens_per_s']:.0f} tok/s, {rows[n]['bandwidth_fraction']:.2f}" for n in names],
            textposition="outside"), row=i, col=1)
        for k, goal in GOALS.items():
            fig.add_vline(x=goal, line_dash="dash", line_color=colors[k], row=i, col=1)
        fig.update_xaxes(range=[0, 1], title_text="fraction of the bound (decode tok/s ÷ bound tok/s)", row=i, col=1)
    fig.update_layout(title="Batch-1 decode (gpu_decode) against the HBM bound measured in the same run"
                            "<br><sup>random weights in published shapes; bars and dashed goals: "
                            + ", ".join(f"{k} {c} (goal {GOALS[k]:.2f})" for k, c in (("bf16", "blue"), ("int4", "orange")))
                            + "</sup>",
                      template="plotly_white", height=160 + 40 * sum(sizes), width=900,
                      margin=dict(l=200, r=40))
    return "gpu_decode_fraction", "GPU: batch-1 decode (gpu_decode) as a fraction of the bound, per host", fig
