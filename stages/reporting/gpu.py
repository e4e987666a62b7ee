"""The GPU results set (metrics/gpu/: lm_gpu, and lm_quantize / lm_eval with device cuda, run
on a CUDA machine and committed): its own table and figures, never mixed into the CPU ones."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from stages.core.errors import PipelineError
from stages.meters.energy_sources import Nvml
from stages.reporting.gpu_distill import runs as distill_runs
from stages.reporting.gpu_methods import methods
from stages.schema import metrics as M, metrics_gpu as MG

EVAL_NAME = {"smollm2-fp16": "base", "smollm2-int8-gptq_marlin": "int8",
             "smollm2-int4-gptq_marlin": "int4", "smollm2-int2-gptq_triton": "int2"}
# speed row -> the lm_eval row of its width run with the same kernel (other kernels: "–")

NOTE = ("Decode tok/s is batch 1 with the fastest of the dynamic cache, the static cache (compiled "
        "step) and the step captured as a CUDA graph (graph); J/token is NVML over those runs. `smollm2-fp16`'s accuracy is the float32 base's (lm_eval "
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
    """{"rows": name -> speed row + copy_gb_s, "evals", "quant", "failed", "machine"}."""
    files = sorted(folder.glob("speed_*.json"))
    if not files:
        raise PipelineError(f"no GPU speed files (speed_*.json) in {folder}")
    out = {"rows": {}, "failed": {}, "evals": {}, "quant": {}, "machine": {}}
    for f in files:   # a later file (by name) re-measures rows: its rows and failures replace theirs
        file = M.read(f, MG.LmGpuFile)
        out["machine"] = file.machine
        out["failed"] = {k: v for k, v in out["failed"].items()
                         if not any(k == n or k.startswith(n + "-") for n in [*file.variants, *file.failed])}
        out["failed"] |= file.failed
        for name, row in file.variants.items():
            d = row.model_dump()
            out["rows"][name] = d | {"copy_gb_s": file.copy_gb_s, **resolved(d, file),
                                     "profile_tokens": file.params.get("profile_tokens")}
    order = list(dict.fromkeys(r["model"] for r in out["rows"].values()))   # a model's rows together
    out["rows"] = dict(sorted(out["rows"].items(), key=lambda kv: order.index(kv[1]["model"])))
    for f in sorted(folder.glob("eval_*.json")):
        out["evals"] |= M.read(f, M.LmEvalFile).model_dump()
    if (folder / "quantize.json").is_file():
        out["quant"] = M.read(folder / "quantize.json", M.LmQuantizeFile).model_dump()
    out["methods"] = methods(folder / "methods")   # gpu_methods.py
    out["distill"] = distill_runs(folder / "distill")   # gpu_distill.py
    return out


def variants(gpu: dict) -> dict:
    """Every speed row with its accuracy joined: lm_eval's of the same width and kernel for the
    pipeline's weights (null where none ran that kernel), null for speed-only shapes."""
    keep = ("device", "gpu", "runtime", "method", "bits", "model", "kernels", "decode_tokens_per_s",
            "prefill_tokens_per_s", "bandwidth_fraction", "energy_j_per_token_decode",
            "energy_j_per_token_prefill", "energy_method", "size_mb", "gpu_memory_mb", "speed_only")
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
    energy per example than the base (same eval protocol); "never" where it uses more."""
    q, ev = gpu["quant"].get(width), gpu["evals"]
    if not q or width not in ev or "base" not in ev:
        return "n/a"
    saved = ev["base"]["energy_eval"]["j_per_unit"] - ev[width]["energy_eval"]["j_per_unit"]
    return f"{q['compress_energy']['joules'] / saved:,.0f}" if saved > 0 else "never"


def table(gpu: dict) -> list[str]:
    head = ("| variant | kernels | LAMBADA acc (lm_eval, CUDA) | decode tok/s b1 (cache) | b32 | prefill tok/s | "
            "bound tok/s | fraction | J/token decode | mJ/token prefill | size MB | GPU MB |")
    out = [head, "|---" * 12 + "|"]
    for name, r in gpu["rows"].items():
        ev = gpu["evals"].get(EVAL_NAME.get(name, ""))
        acc = "n/a (random weights)" if r["speed_only"] else (f"{ev['acc']:.4f}" if ev else "–")
        b32 = next((d["tokens_per_s"] for d in r["decode"] if d["batch"] == 32), None)
        bound = bound_tokens_per_s(r)
        kern = ", ".join(f"{k} {n}" for k, n in r["kernels"].items())
        out.append(f"| `{name}` | {kern} | {acc} | {r['decode_tokens_per_s']:.1f} ({r['decode_cache']}) | "
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


def figures(gpu: dict) -> list[tuple[str, str, go.Figure]]:
    """Accuracy vs J per decoded token (the models with weights), decode tok/s vs the bound."""
    gpu_name = gpu["machine"].get("gpu", "GPU")
    real = {n: r for n, r in gpu["rows"].items() if not r["speed_only"] and EVAL_NAME.get(n) in gpu["evals"]}
    acc = go.Figure(go.Scatter(
        x=[r["j_decode"] for r in real.values()],
        y=[gpu["evals"][EVAL_NAME[n]]["acc"] for n in real], text=list(real), mode="markers+text",
        textposition="top center", marker=dict(size=12)))
    acc.update_layout(title=f"SmolLM2-135M on {gpu_name}: LAMBADA acc (5,153 official) vs J per decoded token "
                            "(NVML, batch 1)", xaxis_title="J / decoded token", yaxis_title="LAMBADA acc",
                      template="plotly_white",
                      xaxis_range=[0, 1.25 * max([r["j_decode"] for r in real.values()] or [1])])
    names = list(gpu["rows"])
    bound = go.Figure([
        go.Bar(name="measured decode tok/s (batch 1)", x=names, y=[gpu["rows"][n]["decode_tokens_per_s"] for n in names]),
        go.Bar(name="bound: D2D copy GB/s ÷ weight bytes per token", x=names,
               y=[bound_tokens_per_s(r) for r in gpu["rows"].values()])])
    bound.update_layout(title=f"Decode speed vs the HBM bound on {gpu_name}", barmode="group",
                        yaxis_type="log", yaxis_title="tokens / s (log)", template="plotly_white")
    return [("gpu_accuracy_energy", "GPU: accuracy vs J per decoded token", acc),
            ("gpu_decode_bound", "GPU: decode vs the bandwidth bound", bound)]
