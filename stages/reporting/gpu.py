"""The GPU results set (metrics/gpu/: lm_gpu, and lm_quantize / lm_eval with device cuda, run
on a CUDA machine and committed): its own table and figures, never mixed into the CPU ones."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stages.core.errors import PipelineError
from stages.meters.energy_sources import Nvml
from stages.reporting.gpu_distill import runs as distill_runs
from stages.reporting.geometry import place_labels
from stages.reporting.gpu_methods import methods
from stages.schema import metrics as M, metrics_gpu as MG

EVAL_NAME = {"smollm2-fp16": "base", "smollm2-int8-gptq_marlin": "int8",
             "smollm2-int4-gptq_marlin": "int4", "smollm2-int2-gptq_triton": "int2"}
# speed row -> the lm_eval row of its width run with the same kernel (other kernels: "–")

NOTE = ("Decode tok/s is batch 1 with the fastest of the dynamic cache, the static cache (compiled "
        "step) and the step captured as a CUDA graph (graph); J/token is NVML over those runs. The "
        "bound figure plots every row's CUDA-graph decode (one mode for all), one panel per host and "
        "kind of weights. The accuracy figure pairs each width's accuracy with the J per example "
        "NVML metered during that same lm_eval run (same weights, same precision). `smollm2-fp16`'s accuracy is the float32 base's (lm_eval "
        "loads the checkpoint as saved, as on the CPU); its speed row is the same weights in fp16. "
        "Speed-only rows carry random weights in the published configs: accuracy n/a. The "
        "`smollm2-135m-*` rows are SmolLM2-135M's own config with random GPTQ codes (group size 64, "
        "as the pipeline's): every kernel and width, with the CUDA graph decode, without deriving "
        "and quantizing the model on the GPU; `smollm2-*` rows are the pipeline's own weights (the "
        "GPTQ speed rows timed on a later lm_quantize run of the same recipe; their accuracy is "
        "lm_eval's of that width with the same kernel, – for another kernel). "
        "NVML's energy counter steps about every 100 ms: runs since energy_min_window_s meter "
        "windows of at least 1 s (the call repeated inside). In older files a decode marked † had "
        "shorter windows and shows the pooled joules of all its windows over their tokens; a "
        "prefill shorter than 1 s is n/r (not resolvable: its windows saw one counter step or none).")


def load(folder: Path) -> dict:
    """{"rows": name -> speed row + copy_gb_s, "evals", "quant", "failed", "machine"}. Speed rows
    are one file each, speed/<row>.json (lm_gpu writes them so): no file overrides another."""
    files = sorted((folder / "speed").glob("*.json"))
    if not files:
        raise PipelineError(f"no GPU speed rows (speed/<row>.json) in {folder}")
    out = {"rows": {}, "failed": {}, "evals": {}, "quant": {}, "machine": {}, "hosts": []}
    libraries = []
    for f in files:
        file = M.read(f, MG.LmGpuFile)
        names = [*file.variants, *file.failed]
        if len(file.variants) > 1 or f.stem not in names \
                or not all(MG.of_row(n, f.stem) for n in names):
            raise PipelineError(f"{f}: a speed file holds one row named as the file, not {names}")
        out["machine"] = file.machine
        libraries.append(file.machine.get("libraries", {}))
        out["failed"] |= file.failed
        for name, row in file.variants.items():
            d = row.model_dump()
            out["rows"][name] = d | {"copy_gb_s": file.copy_gb_s, **resolved(d, file), "host": host_key(file.machine),
                                     "profile_tokens": file.params.get("profile_tokens")}
    if any(lib != libraries[0] for lib in libraries):
        raise PipelineError(f"{folder / 'speed'}: rows timed with different libraries; keep one set per report")
    order = list(dict.fromkeys(r["model"] for r in out["rows"].values()))   # a model's rows together
    out["rows"] = dict(sorted(out["rows"].items(), key=lambda kv: order.index(kv[1]["model"])))
    out["hosts"] = list(dict.fromkeys(r["host"] for r in out["rows"].values()))   # host n = hosts[n-1]
    for r in out["rows"].values():
        r["host"] = out["hosts"].index(r["host"]) + 1
    for f in sorted(folder.glob("eval_*.json")):
        out["evals"] |= M.read(f, M.LmEvalFile).model_dump()
    if (folder / "quantize.json").is_file():
        out["quant"] = M.read(folder / "quantize.json", M.LmQuantizeFile).model_dump()
    out["methods"] = methods(folder / "methods")   # gpu_methods.py
    out["distill"] = distill_runs(folder / "distill")   # gpu_distill.py
    return out


def host_key(machine: dict) -> str:
    """One GPU machine: the GPU, its driver and CUDA, the host CPU and cores, and the OS build
    (two leases of the same GPU model are two hosts: clocks and power limits can differ)."""
    return (f"{machine.get('gpu')}, driver {machine.get('driver')}, CUDA {machine.get('cuda')}, "
            f"{machine.get('cpu')} x{machine.get('usable_cores')}, {machine.get('os')}")


def variants(gpu: dict) -> dict:
    """Every speed row with its accuracy joined: lm_eval's of the same width and kernel for the
    pipeline's weights (null where none ran that kernel), null for speed-only shapes."""
    keep = ("device", "gpu", "runtime", "method", "bits", "model", "kernels", "decode_tokens_per_s",
            "prefill_tokens_per_s", "bandwidth_fraction", "energy_j_per_token_decode",
            "energy_j_per_token_prefill", "energy_method", "size_mb", "gpu_memory_mb", "speed_only",
            "host")
    out = {}
    for name, r in gpu["rows"].items():
        ev = None if r["speed_only"] else gpu["evals"].get(EVAL_NAME.get(name, ""))
        out[name] = {k: r[k] for k in keep} | {"acc": ev["acc"] if ev else None,
                                               "acc_ci95": ev["acc_ci95"] if ev else None}
    return out


def resolved(row: dict, file) -> dict:
    """The per-token joules the NVML counter resolves (it steps about every 100 ms). Files
    before energy_min_window_s timed one call per window: a batch-1 decode window under
    Nvml.min_window_s is re-read as the pooled joules of all its windows (marked), and a
    prefill call that short has no figure (its windows saw one counter step or none)."""
    first = next(d for d in row["decode"] if d["batch"] == 1 and d["cache"] == row["decode_cache"])
    e = first["energy"]
    pooled = e["seconds"] / e["windows"] < Nvml.min_window_s
    call_s = file.params["prefill_tokens"] / row["prefill_tokens_per_s"]
    short = file.energy_min_window_s is None and call_s < Nvml.min_window_s
    return {"j_decode": e["joules"] / e["units"] if pooled else row["energy_j_per_token_decode"],
            "j_decode_pooled": pooled, "j_prefill": None if short else row["energy_j_per_token_prefill"]}


def bound_tokens_per_s(row: dict) -> float:
    """Decode tok/s if every weight byte were read once per token at the measured copy speed."""
    return row["copy_gb_s"] * 1e9 / row["weight_bytes_per_token"]


def break_even(gpu: dict, width: str) -> str:
    """Evaluated examples after which width's GPTQ run (NVML J) is paid back by its lower
    energy per example than the base (same eval protocol); "never" where it uses more. Only
    where the saving is outside the run-to-run spread (width's p90 below the base's p10, over
    at least two windows each): "within noise" where not, "n/r" where one window gave no spread."""
    q, ev = gpu["quant"].get(width), gpu["evals"]
    if not q or width not in ev or "base" not in ev:
        return "n/a"
    base, var = ev["base"]["energy_eval"], ev[width]["energy_eval"]
    saved = base["j_per_unit"] - var["j_per_unit"]
    if saved <= 0:
        return "never"
    if min(base.get("windows", 1), var.get("windows", 1)) < 2:
        return "n/r (one energy window: no spread)"
    if var["j_per_unit_p90"] >= base["j_per_unit_p10"]:
        return "within noise"
    return f"{q['compress_energy']['joules'] / saved:,.0f}"


def table(gpu: dict) -> list[str]:
    head = ("| variant | host | kernels | LAMBADA acc (lm_eval, CUDA) | decode tok/s b1 (cache) | b32 | prefill tok/s | "
            "bound tok/s | fraction | J/token decode | mJ/token prefill | size MB | GPU MB |")
    out = [head, "|---" * 13 + "|"]
    for name, r in gpu["rows"].items():
        ev = gpu["evals"].get(EVAL_NAME.get(name, ""))
        acc = "n/a (random weights)" if r["speed_only"] else (f"{ev['acc']:.4f}" if ev else "–")
        b32 = next((d["tokens_per_s"] for d in r["decode"] if d["batch"] == 32), None)
        bound = bound_tokens_per_s(r)
        kern = ", ".join(f"{k} {n}" for k, n in r["kernels"].items())
        out.append(f"| `{name}` | {r['host']} | {kern} | {acc} | {r['decode_tokens_per_s']:.1f} ({r['decode_cache']}) | "
                   + (f"{b32:.0f}" if b32 else "–") + f" | {r['prefill_tokens_per_s']:.0f} | {bound:.0f} | "
                   f"{r['bandwidth_fraction']:.3f} | {r['j_decode']:.3f}{' †' if r['j_decode_pooled'] else ''} | "
                   + ("n/r" if r["j_prefill"] is None else f"{r['j_prefill'] * 1e3:.1f}")
                   + f" | {r['size_mb']:.0f} | {r['gpu_memory_mb']:.0f} |")
    return out


def eval_table(gpu: dict) -> list[str]:
    out = ["| width | kernels | acc [95% CI] | ppl | J/example (NVML) | GPTQ J (NVML) | break-even examples |",
           "|---" * 7 + "|"]
    for w, e in gpu["evals"].items():
        q = gpu["quant"].get(w, {}).get("compress_energy", {}).get("joules")
        lo, hi = e["acc_ci95"]
        out.append(f"| {w} | {', '.join(e['kernels'])} | {e['acc']:.4f} [{lo:.4f}, {hi:.4f}] | "
                   f"{e['ppl']:.4g} | {e['energy_eval']['j_per_unit']:.3f} | "
                   + (f"{q:,.0f}" if q else "–") + f" | {break_even(gpu, w)} |")
    return out


GRAPH = ("graph", 1)   # the one decode mode of the bound figure: batch 1, step replayed as a CUDA graph


def graph_tokens_per_s(row: dict) -> float | None:
    return next((d["tokens_per_s"] for d in row["decode"] if (d["cache"], d["batch"]) == GRAPH), None)


def figures(gpu: dict) -> list[tuple[str, str, go.Figure]]:
    """Accuracy vs J per example, both from the same lm_eval run; decode tok/s vs the bound,
    one decode mode (batch-1 CUDA graph), one panel per host and kind of weights."""
    ev = gpu["evals"]
    n = {e["num_examples"] for e in ev.values()}
    xs, ys = [e["energy_eval"]["j_per_unit"] for e in ev.values()], [e["acc"] for e in ev.values()]
    x_max, y_lo, y_hi = 1.6 * max(xs or [1]), -0.02, 1.1 * max(ys or [1])
    texts = [f"{w} ({', '.join(e['kernels'])})" for w, e in ev.items()]
    places = place_labels([(x / x_max, (y - y_lo) / (y_hi - y_lo)) for x, y in zip(xs, ys)], texts,
                          char_w=0.0085, line_h=0.05)
    acc = go.Figure(go.Scatter(
        x=xs, y=ys, text=texts, textposition=places, mode="markers+text", marker=dict(size=12),
        error_y=dict(type="data", symmetric=False, array=[e["acc_ci95"][1] - e["acc"] for e in ev.values()],
                     arrayminus=[e["acc"] - e["acc_ci95"][0] for e in ev.values()])))
    acc.update_layout(title=f"SmolLM2-135M, lm_eval on CUDA: LAMBADA acc (n = {', '.join(f'{k:,}' for k in n)} "
                            "official, 95% CI)<br>vs J per example, NVML over the same run"
                            "<br><sup>the eval files do not record their host: base and the widths are "
                            "two runs (eval_base.json, eval_gptq.json), maybe on two leases</sup>",
                      xaxis_title="J / evaluated example (NVML, gross)", yaxis_title="LAMBADA acc",
                      template="plotly_white", showlegend=False, xaxis_range=[0, x_max],
                      yaxis_range=[y_lo, y_hi])
    panels = {}
    for name, r in gpu["rows"].items():
        if graph_tokens_per_s(r) is not None:
            kind = "random weights, published configs" if r["speed_only"] else "the pipeline's weights"
            panels.setdefault((r["host"], kind), []).append(name)
    keys = sorted(panels)
    sizes = [len(panels[k]) + 2 for k in keys]   # bar rows plus room for the panel's title and axis
    bound = make_subplots(rows=len(keys), cols=1, row_heights=[k / sum(sizes) for k in sizes],
                          vertical_spacing=0.1, subplot_titles=[f"host {h}: {kind}" for h, kind in keys])
    for i, key in enumerate(keys, start=1):
        names = panels[key][::-1]   # top to bottom in table order
        for label, color, values in (
                ("bound: D2D copy GB/s ÷ weight bytes per token (same run)", "#e45756",
                 [bound_tokens_per_s(gpu["rows"][n]) for n in names]),
                ("measured decode tok/s (batch 1, CUDA graph)", "#4c78a8",
                 [graph_tokens_per_s(gpu["rows"][n]) for n in names])):
            bound.add_trace(go.Bar(name=label, y=names, x=values, orientation="h", marker_color=color,
                                   showlegend=i == 1, legendrank=2 if label.startswith("bound") else 1),
                            row=i, col=1)
        bound.update_xaxes(type="log", dtick=1, title_text="tokens / s (log)" if i == len(keys) else None,
                           row=i, col=1)
    bound.update_layout(title=f"Decode speed vs the copy-bandwidth bound on {gpu['machine'].get('gpu', 'GPU')}: "
                              "one host per panel (hosts in plots/gpu/report.md)",
                        barmode="group", template="plotly_white", height=110 + 19 * sum(sizes),
                        bargap=0.25, legend=dict(orientation="h", y=-0.12, yanchor="top", x=0),
                        margin=dict(b=120))
    return [("gpu_accuracy_energy", "GPU: accuracy vs J per example (same lm_eval run)", acc),
            ("gpu_decode_bound", "GPU: CUDA-graph decode vs the bandwidth bound, per host", bound)]
