"""Rewrite the README's results block from the committed metrics/summary.json and params.yaml,
and the GPU block of docs/gpu.md from metrics/gpu (not a DVC stage: run it after `dvc repro`,
before committing the results)."""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import PipelineError, run_main
from stages.core.files import read_json
from stages.reporting import gpu
from stages.reporting.readme import (CLS_END, CLS_START, GPU_END, GPU_START, QUICK_END, QUICK_START, render,
                                     render_cls, render_gpu, render_quickstart, replace_block)
from stages.schema import params as P


def stage_names() -> list[str]:
    """Every stage of dvc.yaml as DVC resolves it (foreach and matrix items by name)."""
    from dvc.repo import Repo

    return sorted(st.addressing for st in Repo(".").index.stages)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--readme", default="README.md", type=Path)
    ap.add_argument("--summary", default="metrics/summary.json")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--gpu", default="metrics/gpu", type=Path)
    ap.add_argument("--gpu-doc", default="docs/gpu.md", type=Path, help="the page holding the GPU block")
    ap.add_argument("--run-time", default="metrics/run_time.json", type=Path)
    ap.add_argument("--cls", default="plots/cls/variants.json", type=Path, help="the classifier's rows")
    args = ap.parse_args(argv)
    k = P.load(args.params, ("eval_lm.k",))["eval_lm"]["k"]
    summary = read_json(args.summary, "summary")
    if "lm" not in summary:
        raise PipelineError(f"{args.summary} has no 'lm' section (written before the LM records): "
                            "run the aggregate stage first")
    block = render(summary, k)
    text = replace_block(args.readme.read_text(), block)
    if args.run_time.is_file():
        quick = render_quickstart(read_json(args.run_time, "run times"), stage_names())
        text = replace_block(text, quick, QUICK_START, QUICK_END)
    if args.cls.is_file():
        text = replace_block(text, render_cls(read_json(args.cls, "classifier rows")), CLS_START, CLS_END)
    gpu_text = replace_block(args.gpu_doc.read_text(), render_gpu(gpu.load(args.gpu)), GPU_START, GPU_END)
    args.readme.write_text(text)   # both rendered before either is written
    args.gpu_doc.write_text(gpu_text)


if __name__ == "__main__":
    run_main(main)
