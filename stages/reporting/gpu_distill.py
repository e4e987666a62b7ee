"""The GPU results set's distillation table (metrics/gpu/distill/: lm_chain nodes trained with
distill.device cuda, 40 steps as the CPU default and a longer run, each scored by lm_eval on
CUDA), beside the base they start from."""
from __future__ import annotations

from pathlib import Path

from stages.core.errors import PipelineError
from stages.schema import metrics as M

NOTE = ("Pruning and distillation on CUDA (lm_chain, `distill.device: cuda`), all 5,153 official "
        "LAMBADA examples. Training text is the calibration corpus only (BBC articles, disjoint from "
        "every evaluated passage); `distill` starts from the base minus every 2nd layer, "
        "`prune+distill` is recovery fine-tuning of the 50 % magnitude-pruned model (its zeros "
        "kept). A run's name ends in its steps; GPU training is not bitwise deterministic. Pruning "
        "runs on the host CPU: NVML (the GPU board) does not meter it (–).")


def runs(folder: Path) -> dict:
    """{run: eval row + the node's cost (eval_<run>.json from lm_eval, <run>.json from lm_chain)}."""
    out = {}
    for f in sorted(folder.glob("eval_*.json"), key=lambda f: (f.stem.count("+"), len(f.stem), f.stem)):
        run = f.stem[len("eval_"):]
        cost = folder / f"{run}.json"
        if not cost.is_file():
            raise PipelineError(f"{f} has no lm_chain file {cost.name} beside it")
        c = M.read(cost, M.LmChain).model_dump()
        losses = c["losses"] or []
        out[run] = M.read(f, M.LmEvalFile).model_dump()["base"] | {
            "method": c["method"], "sparsity": c["sparsity"], "layers": c["layers"],
            "steps": len(losses) or None, "tokens": c["tokens_trained"],
            "final_loss": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
            "compress_s": c["compress_time_s"],   # NVML meters the GPU: a host-CPU step (prune) has none
            "compress_j": c["compress_energy"]["joules"] if c["device"] == "cuda" else None}
    return out


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _acc(e: dict) -> str:
    return f"{e['acc']:.4f} [{e['acc_ci95'][0]:.4f}, {e['acc_ci95'][1]:.4f}]"


def table(gpu: dict) -> list[str]:
    out = ["| run | method | layers | sparsity | steps | tokens trained | final loss | acc [95% CI] | "
           "ppl | top-k acc | train s | train J (NVML) |", "|---" * 12 + "|"]
    if "base" in gpu["evals"]:
        e = gpu["evals"]["base"]
        out.append(f"| base | none | 30 | 0 | – | – | – | {_acc(e)} | {e['ppl']:.1f} | "
                   f"{e['topk_acc']:.4f} | – | – |")
    for run, e in gpu["distill"].items():
        out.append(f"| {run} | {e['method']} | {e['layers'] or 30} | {e['sparsity']:.2f} | "
                   f"{_fmt(e['steps'], ',')} | {_fmt(e['tokens'], ',')} | {_fmt(e['final_loss'], '.2f')} | "
                   f"{_acc(e)} | {e['ppl']:,.0f} | {e['topk_acc']:.4f} | {e['compress_s']:.0f} | "
                   f"{_fmt(e['compress_j'], ',.0f')} |")
    return out
