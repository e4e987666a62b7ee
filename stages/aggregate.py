"""Aggregate every metric file into metrics/summary.json, plot tables, figures and a report.

Reads JSON only (no model, no torch/TensorFlow import), so a rerun takes seconds. Everything
is validated and rendered before any output moves into place: an error writes nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
from pathlib import Path

from stages import figures, report
from stages.common import atomic_path, get_param, load_params, log, run_main, timed
from stages.metric_files import detector_variants, llm_variants, load_detector, load_llm
from stages.report import DETECTOR_METRICS, LLM_METRICS

PARAM_KEYS = ("coco.source", "lambada.source", "llm.source", "llm.hub_id", "detector", "quant",
              "eval_det", "eval_lm")


def params_used(params: dict) -> dict:
    return {key: get_param(params, key) for key in PARAM_KEYS}


def summarize(det: dict[str, dict], llm: dict[str, dict]) -> dict:
    """Stable keys detector.<variant>.<metric>, llm.<variant>.<metric>, plus each metric's
    direction under higher_is_better (as lm-evaluation-harness results do)."""
    def ranked(metrics):
        return [m for m in metrics if m.higher_is_better is not None]

    def part(rows, metrics):
        return {v: {m.key: r[m.key] for m in ranked(metrics)} for v, r in rows.items()}

    return {"detector": part(det, DETECTOR_METRICS), "llm": part(llm, LLM_METRICS),
            "higher_is_better": {
                "detector": {m.key: m.higher_is_better for m in ranked(DETECTOR_METRICS)},
                "llm": {m.key: m.higher_is_better for m in ranked(LLM_METRICS)}}}


def csv_text(rows: dict[str, dict], metrics) -> str:
    """One row per variant in fixed order; raw values (0..1 accuracies), empty when null."""
    def cell(v):
        return "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    lines = [",".join(["variant"] + [m.key for m in metrics])]
    lines += [",".join([v] + [cell(r[m.key]) for m in metrics]) for v, r in rows.items()]
    return "\n".join(lines) + "\n"


def machine_info(used: dict) -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for name in report.LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    return {"CPU": cpu, "logical cores": str(os.cpu_count()),
            "threads": f"LiteRT eval_det.threads={used['eval_det']['threads']}, "
                       f"torch eval_lm.threads={used['eval_lm']['threads']}",
            "OS": platform.platform(), "Python": platform.python_version(),
            "libraries": ", ".join(versions)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", required=True, type=Path, help="folder of the metric files")
    ap.add_argument("--summary", required=True, type=Path, help="summary JSON to write")
    ap.add_argument("--plots", required=True, type=Path, help="folder for tables and figures")
    ap.add_argument("--params", default="params.yaml", type=Path)
    args = ap.parse_args(argv)
    with timed("reading params and metrics"):
        used = params_used(load_params(args.params))
        det = load_detector(args.metrics, detector_variants(used["detector"]["precisions"]))
        llm = load_llm(args.metrics, llm_variants(used["quant"]["bits"]))
    with timed("building figures"):
        items = figures.build_all(det, llm)
        browser = figures.find_browser()
    text = report.render(det, llm, used, machine_info(used),
                         [(title, f"png/{stem}.png") for stem, title, _ in items])
    out = {"summary": args.summary, "html": args.plots / "html", "png": args.plots / "png",
           "report": args.plots / "report.md", "detector": args.plots / "detector.csv",
           "llm": args.plots / "llm.csv"}
    with contextlib.ExitStack() as stack:  # every output moves into place only if all succeed
        tmp = {name: stack.enter_context(atomic_path(path)) for name, path in out.items()}
        tmp["summary"].write_text(json.dumps(summarize(det, llm), indent=2) + "\n")
        tmp["detector"].write_text(csv_text(det, DETECTOR_METRICS))
        tmp["llm"].write_text(csv_text(llm, LLM_METRICS))
        tmp["report"].write_text(text)
        for name in ("html", "png"):
            tmp[name].mkdir()
        with timed(f"writing {len(items)} self-contained HTML figures"):
            figures.write_html(items, tmp["html"])
        with timed(f"rendering {len(items)} PNGs with kaleido + {browser}"):
            figures.write_png(items, tmp["png"], browser)
    log.info("wrote %s, %s and %s", args.summary, out["report"], args.plots)


if __name__ == "__main__":
    run_main(main)
