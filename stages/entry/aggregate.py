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
from stages.reporting import energy_figures, export, figures, methods, ort_rows, report, runtimes
from stages.reporting.metric_files import detector_variants, llm_variants, load_detector, load_llm
from stages.reporting.specs import DETECTOR_METRICS, LLM_METRICS
from stages.reporting.summary import csv_text, machine_lines, summarize
from stages.schema import params as P

PARAMS = ("coco.source", "lambada.source", "llm.source", "llm.hub_id", "detector", "quant",
          "bench_det", "eval_lm", "bench_lm", "energy.grid_gco2_per_kwh", "energy.grid_country",
          "lm_runtimes.variants", "lm_runtimes.llamacpp.variants",
          "lm_runtimes.openvino.variants", "chains", "gptq.bits", "awq.bits")


def used_params(p: dict) -> dict:
    """The params as the report prints them, keyed as in dvc.yaml."""
    grid, source = grid_intensity(p["energy"]["grid_gco2_per_kwh"], p["energy"]["grid_country"])
    return {"coco.source": p["coco"]["source"], "lambada.source": p["lambada"]["source"],
            "llm.source": p["llm"]["source"], "llm.hub_id": p["llm"]["hub_id"],
            **{key: p[key] for key in ("detector", "quant", "bench_det", "eval_lm", "bench_lm")},
            "energy": p["energy"], "grid": f"{grid:g} gCO2e/kWh ({source})", "grid_gco2_per_kwh": grid,
            "lm_runtimes.variants": list(p["lm_runtimes"]["variants"])
            + [f"llamacpp-{v}" for v in p["lm_runtimes"]["llamacpp"]["variants"]]
            + [f"ov-{v}" for v in p["lm_runtimes"]["openvino"]["variants"]],
            "chains": {n: {**c, "gptq_bits": p["gptq"]["bits"], "awq_bits": p["awq"]["bits"]}
                       for n, c in p["chains"].items()}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", required=True, type=Path, help="folder of the metric files")
    ap.add_argument("--summary", required=True, type=Path, help="summary JSON to write")
    ap.add_argument("--plots", required=True, type=Path, help="folder for tables and figures")
    ap.add_argument("--params", default="params.yaml", type=Path)
    args = ap.parse_args(argv)
    with timed("reading params and metrics"):
        used = used_params(P.load(args.params, PARAMS)).copy()
        used.update({k: v.plain() for k, v in used.items() if isinstance(v, P.Tracked)})
        grid = used.pop("grid_gco2_per_kwh")
        det, det_machine = load_detector(args.metrics, detector_variants(
            used["detector"]["precisions"], used["detector"]["runtimes"]), grid)
        llm, _ = load_llm(args.metrics, llm_variants(used["quant"]["bits"], used.pop("chains")), grid)
        ort, bandwidth = ort_rows.load_ort(args.metrics, used["lm_runtimes.variants"], grid)
        bw_cpu = next((r["bench_cpu"] for r in ort.values()), None)   # where the triad ran
        lm_rows = {**runtimes.torch_rows(llm, bandwidth, bw_cpu), **ort}
    with timed("building figures"):
        items = (figures.build_all(det, llm) + energy_figures.build(det, llm) + runtimes.figures(lm_rows)
                 + methods.figures(llm))
        browser = export.find_browser()
    text = report.render(det, llm, used, machine_lines(det_machine),
                         [(title, f"png/{stem}.png") for stem, title, _ in items])
    text += ("\n## Language model across runtimes\n\n" + runtimes.table(lm_rows) + "\n\n"
             + runtimes.NOTE + "\n\n" + "\n".join(methods.section(llm)))
    summary = summarize(det, llm)
    for v, entry in runtimes.summary_entries(lm_rows).items():
        summary["llm"][v] = {**summary["llm"].get(v, {}), **entry}
    summary["higher_is_better"]["llm"].update(runtimes.DIRECTIONS)
    out = {"summary": args.summary, "html": args.plots / "html", "png": args.plots / "png",
           "report": args.plots / "report.md", "detector": args.plots / "detector.csv",
           "llm": args.plots / "llm.csv", "runtimes": args.plots / "llm_runtimes.csv"}
    with contextlib.ExitStack() as stack:  # every output moves into place only if all succeed
        tmp = {name: stack.enter_context(atomic_path(path)) for name, path in out.items()}
        tmp["summary"].write_text(json.dumps(summary, indent=2) + "\n")
        tmp["runtimes"].write_text(runtimes.csv_text(lm_rows))
        tmp["detector"].write_text(csv_text(det, DETECTOR_METRICS))
        tmp["llm"].write_text(csv_text(llm, LLM_METRICS))
        tmp["report"].write_text(text)
        for name in ("html", "png"):
            tmp[name].mkdir()
        with timed(f"writing {len(items)} self-contained HTML figures"):
            export.write_html(items, tmp["html"])
        with timed(f"rendering {len(items)} PNGs with kaleido + {browser}"):
            export.write_png(items, tmp["png"], browser)
    log.info("wrote %s, %s and %s", args.summary, out["report"], args.plots)


if __name__ == "__main__":
    run_main(main)
