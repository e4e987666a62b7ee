"""Aggregate every metric file into metrics/summary.json, plot tables, figures and a report.

Reads JSON only (no model, no torch/TensorFlow import), so a rerun takes seconds. Everything
is validated and rendered before any output moves into place: an error writes nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from stages.core.errors import log, run_main, timed
from stages.core.files import atomic_path
from stages.meters.cpu_power import grid_intensity
from stages.reporting import (energy_figures, export, figures, headline, hosts, lm, lm_coverage, lm_figures,
                               lm_gate, lm_render, report)
from stages.reporting.metric_files import detector_variants, load_detector
from stages.reporting.specs import DETECTOR_METRICS
from stages.reporting.summary import csv_text, machine_lines, summarize
from stages.schema import params as P

TASK = {"offline": "LAMBADA-style (offline BBC)"}   # the figures' name of the evaluation set per source
PARAMS = ("host", "coco.source", "lambada.source", "models", "variants", "quant", "detector", "bench_det", "eval_lm", "bench_lm",
          "bootstrap", "verdict", "energy.grid_gco2_per_kwh", "energy.grid_country")


def used_params(p: dict) -> dict:
    """The params as the report prints them, keyed as in dvc.yaml."""
    grid, source = grid_intensity(p["energy"]["grid_gco2_per_kwh"], p["energy"]["grid_country"])
    return {"host": p["host"], "coco.source": p["coco"]["source"], "lambada.source": p["lambada"]["source"],
            **{key: p[key] for key in ("models", "detector", "bench_det", "eval_lm", "bench_lm", "bootstrap",
                                   "verdict")},
            "energy": p["energy"], "grid": f"{grid:g} gCO2e/kWh ({source})", "grid_gco2_per_kwh": grid}


def lm_section(rows: dict[str, dict], models: dict[str, dict], metrics: Path, fraction: float) -> list[str]:
    """The report's LM part: the deployment gate per model and runtime, then one table per model
    (its variants paired with its reference)."""
    out = ["## Which language-model variant can ship", ""] + lm_gate.legend(rows, fraction) + [""]
    for model in sorted({r["model"] for r in rows.values()}):
        out += [f"**{model}**", ""] + lm_gate.matrix(rows, model) + [""]
    out += ["## Language models (every runtime and method, paired on the same examples)", "",
           "Δacc is each variant's accuracy minus its model's reference (the base on PyTorch fp32), "
           "averaged over the same examples, with a paired 95% bootstrap interval. Verdict: whether "
           "that interval excludes 0, and whether the variant is on its model's accuracy-vs-speed "
           "or accuracy-vs-size Pareto front (nothing both faster or smaller and more accurate).", ""]
    methods = sorted({r["energy_method"] for r in rows.values()})
    if methods:
        out += ["J/token: energy per decoded token, batch 1 (method: " + ", ".join(f"`{m}`" for m in methods)
                + ("; `estimate` is CPU time × W per core, not a measurement" if "estimate" in methods else "")
                + ").", ""]
    for model in sorted({r["model"] for r in rows.values()}):
        out += [f"### {model}", "", f"Base: {lm_coverage.base_of(metrics, model)}.", ""]
        out += lm_render.table(rows, model) + [""]
    return out + ["### What ran, per model", "", "Counts are scored variants; an empty cell says why."
                  " Unsupported cells are refused by check_params before any stage runs.", ""] \
        + lm_coverage.table(rows, models) + [""]


def collect(metrics: Path, params: Path):
    """The params the report uses and every row it shows: (used params, detector variants,
    detector rows, the detector's machine, LM rows with their gates, every host's machine)."""
    p = P.load(params, PARAMS)
    used, wanted = used_params(p).copy(), lm.wanted(p["variants"], p["quant"])
    used.update({k: v.plain() for k, v in used.items() if isinstance(v, P.Tracked)})
    grid = used.pop("grid_gco2_per_kwh")
    det_variants = detector_variants(used["detector"]["precisions"], used["detector"]["runtimes"])
    det, det_machine = load_detector(metrics, det_variants, grid, used["host"])
    rows = lm.load(metrics, used["bootstrap"]["samples"], used["bootstrap"]["seed"], wanted, used["host"])
    lm_gate.apply(rows, used["verdict"]["pass_fraction"])
    return used, det_variants, det, det_machine, rows, hosts.collect(metrics)


def build_figures(used: dict, det: dict, rows: dict) -> list:
    """[(file stem, title, plotly figure)] of every figure the report shows."""
    return (figures.build_all(det) + energy_figures.build(det)
            + lm_figures.build(rows, TASK.get(used["lambada.source"], "LAMBADA")))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", required=True, type=Path, help="folder of the metric files")
    ap.add_argument("--summary", required=True, type=Path, help="summary JSON to write")
    ap.add_argument("--plots", required=True, type=Path, help="folder for tables and figures")
    ap.add_argument("--headline", type=Path, help="folder for the per-variant headline metrics (DVC's metrics)")
    ap.add_argument("--params", default="params.yaml", type=Path)
    args = ap.parse_args(argv)
    with timed("reading params and metrics"):
        used, det_variants, det, det_machine, rows, machines = collect(args.metrics, args.params)
    with timed("building figures"):
        items = build_figures(used, det, rows)
        browser = export.find_browser()
    text = report.render(det, lm_section(rows, used["models"], args.metrics, used["verdict"]["pass_fraction"])
                         + hosts.section(machines, sorted(rows), det_variants), used, machine_lines(det_machine),
                         [(title, f"png/{stem}.png") for stem, title, _ in items])
    det_summary = summarize(det)
    summary = {"detector": det_summary["detector"], "lm": lm_render.summary(rows), "verdict": used["verdict"],
               "host": used["host"], "hosts": hosts.summary(machines),
               "higher_is_better": {**det_summary["higher_is_better"], "lm": lm.DIRECTIONS}}
    out = {"summary": args.summary, "html": args.plots / "html", "png": args.plots / "png",
           "report": args.plots / "report.md", "detector": args.plots / "detector.csv",
           "lm": args.plots / "lm.csv", **({"headline": args.headline} if args.headline else {})}
    with contextlib.ExitStack() as stack:  # every output moves into place only if all succeed
        tmp = {name: stack.enter_context(atomic_path(path)) for name, path in out.items()}
        tmp["summary"].write_text(json.dumps(summary, indent=2) + "\n")
        tmp["detector"].write_text(csv_text(det, DETECTOR_METRICS))
        tmp["lm"].write_text(lm_render.csv_text(rows))
        tmp["report"].write_text(text)
        if args.headline:
            tmp["headline"].mkdir()
            for path, numbers in headline.files(det, rows).items():
                (tmp["headline"] / path).parent.mkdir(parents=True, exist_ok=True)
                (tmp["headline"] / path).write_text(json.dumps(numbers, indent=2) + "\n")
        for name in ("html", "png"):
            tmp[name].mkdir()
        with timed(f"writing {len(items)} self-contained HTML figures"):
            export.write_html(items, tmp["html"])
        with timed(f"rendering {len(items)} PNGs with kaleido + {browser}"):
            export.write_png(items, tmp["png"], browser)
    log.info("wrote %s, %s and %s", args.summary, out["report"], args.plots)


if __name__ == "__main__":
    run_main(main)
