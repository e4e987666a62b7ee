"""The GPU results set (metrics/gpu/: lm_gpu, and lm_quantize / lm_eval with device cuda, run
on a CUDA machine and committed): its own table and figures, never mixed into the CPU ones."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from stages.core.errors import PipelineError
from stages.schema import metrics as M, metrics_gpu as MG

EVAL_NAME = {"smollm2-fp16": "base", "smollm2-int8-gptq_marlin": "int8",
             "smollm2-int4-gptq_marlin": "int4"}   # speed row -> lm_eval row of the same model

NOTE = ("Decode tok/s is batch 1 with the fastest of the dynamic cache, the static cache (compiled "
        "step) and the step captured as a CUDA graph (graph); J/token is NVML over those runs. `smollm2-fp16`'s accuracy is the float32 base's (lm_eval "
        "loads the checkpoint as saved, as on the CPU); its speed row is the same weights in fp16. "
        "Speed-only rows carry random weights in the published configs: accuracy n/a.")

METHOD_NOTE = ("int4 by method on CUDA, all 5,153 official LAMBADA examples, group size 64: GPTQ and "
               "AWQ on the same 128 calibration passages, RTN on none. GPTQ's row is the 12-02 run "
               "(eval_gptq.json, quantize.json); AWQ (lm_chain, method awq) and RTN (lm_rtn) are "
               "methods/, 12-03. The kernel differs by run; the fp16 kernels agree to rounding.")


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
            out["rows"][name] = row.model_dump() | {"copy_gb_s": file.copy_gb_s,
                                                    "profile_tokens": file.params.get("profile_tokens")}
    order = list(dict.fromkeys(r["model"] for r in out["rows"].values()))   # a model's rows together
    out["rows"] = dict(sorted(out["rows"].items(), key=lambda kv: order.index(kv[1]["model"])))
    for f in sorted(folder.glob("eval_*.json")):
        out["evals"] |= M.read(f, M.LmEvalFile).model_dump()
    if (folder / "quantize.json").is_file():
        out["quant"] = M.read(folder / "quantize.json", M.LmQuantizeFile).model_dump()
    out["methods"] = methods(folder / "methods")
    return out


def methods(folder: Path) -> dict:
    """int4 by method on CUDA (methods/: eval_<m>.json from lm_eval, <m>.json from lm_rtn or
    lm_chain): {method: eval row + compress time and NVML J}."""
    out = {}
    for f in sorted(folder.glob("eval_*.json")):
        m = f.stem[len("eval_"):]
        ev = M.read(f, M.LmEvalFile).model_dump()["int4"]
        cost = folder / f"{m}.json"
        if not cost.is_file():
            raise PipelineError(f"{f} has no cost file {cost.name} beside it")
        c = M.read(cost, M.LmChain).model_dump() if m != "rtn" else \
            M.read(cost, M.LmQuantizeFile).model_dump()["int4"]
        out[m] = ev | {"compress_s": c.get("compress_time_s", c.get("quant_time_s")),
                       "compress_j": c["compress_energy"]["joules"]}
    return out


def method_table(gpu: dict) -> list[str]:
    """GPTQ (eval_gptq.json's int4, quantize.json) beside the other int4 methods."""
    rows = dict(gpu["methods"])
    if "int4" in gpu["evals"] and "int4" in gpu["quant"]:
        q = gpu["quant"]["int4"]
        rows = {"gptq": gpu["evals"]["int4"] | {"compress_s": q["quant_time_s"],
                                                "compress_j": q["compress_energy"]["joules"]}} | rows
    out = ["| int4 method | kernels | acc [95% CI] | ppl | top-k acc | compress s | compress J (NVML) |",
           "|---" * 7 + "|"]
    for m, e in rows.items():
        lo, hi = e["acc_ci95"]
        out.append(f"| {m} | {', '.join(e['kernels'])} | {e['acc']:.4f} [{lo:.4f}, {hi:.4f}] | "
                   f"{e['ppl']:.1f} | {e['topk_acc']:.4f} | {e['compress_s']:.0f} | {e['compress_j']:,.0f} |")
    return out


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
            "bound tok/s | fraction | J/token decode | size MB | GPU MB |")
    out = [head, "|---" * 11 + "|"]
    for name, r in gpu["rows"].items():
        ev = gpu["evals"].get(EVAL_NAME.get(name, ""))
        acc = "n/a (random weights)" if r["speed_only"] else (f"{ev['acc']:.4f}" if ev else "–")
        b32 = next((d["tokens_per_s"] for d in r["decode"] if d["batch"] == 32), None)
        bound = bound_tokens_per_s(r)
        kern = ", ".join(f"{k} {n}" for k, n in r["kernels"].items())
        out.append(f"| `{name}` | {kern} | {acc} | {r['decode_tokens_per_s']:.1f} ({r['decode_cache']}) | "
                   + (f"{b32:.0f}" if b32 else "–") + f" | {r['prefill_tokens_per_s']:.0f} | {bound:.0f} | "
                   f"{r['bandwidth_fraction']:.3f} | {r['energy_j_per_token_decode']:.3f} | "
                   f"{r['size_mb']:.0f} | {r['gpu_memory_mb']:.0f} |")
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
        x=[r["energy_j_per_token_decode"] for r in real.values()],
        y=[gpu["evals"][EVAL_NAME[n]]["acc"] for n in real], text=list(real), mode="markers+text",
        textposition="top center", marker=dict(size=12)))
    acc.update_layout(title=f"SmolLM2-135M on {gpu_name}: LAMBADA acc (5,153 official) vs J per decoded token "
                            "(NVML, batch 1)", xaxis_title="J / decoded token", yaxis_title="LAMBADA acc",
                      template="plotly_white",
                      xaxis_range=[0, 1.25 * max([r["energy_j_per_token_decode"] for r in real.values()] or [1])])
    names = list(gpu["rows"])
    bound = go.Figure([
        go.Bar(name="measured decode tok/s (batch 1)", x=names, y=[gpu["rows"][n]["decode_tokens_per_s"] for n in names]),
        go.Bar(name="bound: D2D copy GB/s ÷ weight bytes per token", x=names,
               y=[bound_tokens_per_s(r) for r in gpu["rows"].values()])])
    bound.update_layout(title=f"Decode speed vs the HBM bound on {gpu_name}", barmode="group",
                        yaxis_type="log", yaxis_title="tokens / s (log)", template="plotly_white")
    return [("gpu_accuracy_energy", "GPU: accuracy vs J per decoded token", acc),
            ("gpu_decode_bound", "GPU: decode vs the bandwidth bound", bound)]
