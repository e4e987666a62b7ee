"""The GPU results set's report: plots/gpu/report.md (the earlier lm_gpu set, then the gpu_decode rows per host) and its
figures (PNG), from the committed metrics/gpu/ files. Runs on any CPU;
the files themselves come from a CUDA machine (README "GPU results")."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages.core.errors import run_main
from stages.core.files import atomic_path
from stages.reporting import export, gpu as G, gpu_decode, gpu_distill, gpu_methods
from stages.reporting.gpu_profile import profile_table

PARAMS: tuple[str, ...] = ()   # reads no params: only the committed metrics/gpu files


def figures(gpu: dict, folder: Path) -> list:
    """(stem, title, figure) of every PNG: the earlier set's, then the gpu_decode rows' if any."""
    return G.figures(gpu) + [f for f in [gpu_decode.figure(folder)] if f]


def render(gpu: dict, folder: Path, figs: list) -> str:
    m = gpu["machine"]
    lines = ["# GPU results", "", f"## The earlier set: measured on {m.get('gpu', 'GPU')} (stages/entry/lm_gpu.py)", "",
             "Hosts (the `host` column; two leases of one GPU model are two hosts, and no figure "
             "puts two hosts on one axis):", ""]
    lines += [f"{i}. {h}" for i, h in enumerate(gpu["hosts"], start=1)]
    lines += ["", "Libraries (every row): " + ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items()) + ".",
             "Separate from the CPU tables: other hardware, other protocol (gpu_lm params).", "",
             "Speed (NVML energy, gross; bound = device-to-device copy bandwidth ÷ weight bytes "
             "per token, same run):", ""] + G.table(gpu) + ["", G.NOTE]
    if prof := profile_table(gpu["rows"]):
        lines += ["", "Where a graph-replayed decode step's time goes (torch.profiler, "
                  "gpu_lm.profile_tokens replays):", ""] + prof
    if gpu["evals"]:
        lines += ["", "SmolLM2-135M through the pipeline's own CUDA path (lm_quantize / lm_eval with "
                  "device cuda, all 5,153 official LAMBADA examples):", ""] + G.eval_table(gpu)
    if gpu["methods"]:
        lines += ["", gpu_methods.METHOD_NOTE, ""] + gpu_methods.method_table(gpu)
    if gpu["distill"]:
        lines += ["", gpu_distill.NOTE, ""] + gpu_distill.table(gpu)
    if decode := gpu_decode.tables(folder):
        lines += ["", "## Batch-1 decode against the bound (gpu_decode)", "", gpu_decode.NOTE, ""] + decode
    if gpu["failed"]:
        lines += ["", "Rows that could not run:", ""] + [f"- `{n}`: {e}" for n, e in gpu["failed"].items()]
    lines += [""] + [f"![{title}](png/{stem}.png)" for stem, title, _ in figs]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metrics", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    gpu = G.load(args.metrics)   # every file validated before anything is written
    browser = export.find_browser()
    with atomic_path(args.out) as tmp:
        (tmp / "png").mkdir(parents=True)
        items = figures(gpu, args.metrics)
        export.write_png(items, tmp / "png", browser)
        (tmp / "report.md").write_text(render(gpu, args.metrics, items))
        (tmp / "variants.json").write_text(json.dumps(G.variants(gpu), indent=1) + "\n")


if __name__ == "__main__":
    run_main(main)
