"""One compression node: a method (stages/methods/lm/<method>.py) applied to its input node's
model folder, written as a model folder whose record.json is the input's plus this step.

Two kinds of stage, one code path: a `compress` table node (its knobs: the method's defaults
under `methods`, then the entry's own), and with --sweep a `quant` sweep: the method at every
width of quant.bits, each written to `<out>/int<bits>/` with its metrics `<metrics>/int<bits>.json`
(one stage per model and method: a DVC matrix cannot iterate over the scalar that
`dvc exp run -S quant.bits=4` writes). Calibration passages are the LAMBADA stage's calib.jsonl
(never evaluated); the teacher (distillation) is the model's base. Each step is metered.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.device import require_device
from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import atomic_path, dir_size_mb, require_dir, write_json
from stages.core.numerics import pin_cpu_numerics
from stages.datasets.lambada import read_jsonl
from stages.meters import energy as E
from stages.models import lm_record
from stages.schema.lm_tables import Node, Sweep
from stages.schema.load import load_sections
from stages.schema.common import Energy

# per stage (one entry serves both): a table node reads its entry, the sweep its widths and method
PARAMS = {"lm_compress": ("compress.${key}", "methods.${item.method}") + E.PARAMS,
          "lm_quant": ("quant.bits", "methods.${item.method}") + E.PARAMS}


def knobs_of(args) -> tuple[list[dict], dict]:
    """(the knobs of each node the stage writes, the energy section)."""
    if args.bits is not None:   # one node at one width (the method's defaults): tests, by hand
        p = load_sections(args.params, (f"methods.{args.method}",) + E.PARAMS,
                          {"methods": dict[str, dict], "energy": Energy})
        own = [{"bits": args.bits}]
    elif not args.sweep:
        keys = (f"compress.{args.node}", f"methods.{args.method}") + E.PARAMS
        p = load_sections(args.params, keys, {"compress": dict[str, Node], "methods": dict[str, dict],
                                              "energy": Energy})
        node = p["compress"][args.node].plain()
        if node["method"] != args.method:
            raise PipelineError(f"compress.{args.node}.method is {node['method']}, not --method {args.method}")
        own = [{k: v for k, v in node.items() if k not in ("model", "input", "method")}]
    else:
        keys = ("quant.bits", f"methods.{args.method}") + E.PARAMS
        p = load_sections(args.params, keys, {"quant": Sweep, "methods": dict[str, dict], "energy": Energy})
        own = [{"bits": b} for b in p["quant"]["bits"]]
    return [{**p["methods"].get(args.method, {}), **o} for o in own], p["energy"]


def apply(method, knobs: dict, args, calib, meter, out: Path, metrics: Path) -> None:
    """One node: the method applied to the input, with its record and metrics."""
    record = lm_record.read(args.input)
    with atomic_path(out) as tmp, timed(f"{args.node}: {args.method} of {args.input}"):
        info, cost = meter.once(lambda: method.apply(args.input, tmp, knobs, calib, args.teacher), 1, "run")
        step = {"method": args.method, "knobs": knobs}
        lm_record.write(tmp, {**record, "chain": record["chain"] + [step]})
        size = dir_size_mb(tmp)
    write_json(metrics, {"record": {**record, "chain": record["chain"] + [step]},
                         "step": {**step, **info}, "size_mb": round(size, 2),
                         "compress_time_s": round(cost["seconds"], 2), "compress_energy": cost})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--input", "--teacher", "--calib", "--out", "--metrics"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--node", required=True, help="a compress node, or the sweep's <model>-<method>")
    ap.add_argument("--method", required=True)
    ap.add_argument("--sweep", action="store_true", help="every quant.bits width: <out>/int<bits>/")
    ap.add_argument("--bits", type=int, help="one node: the method's defaults at this width")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    all_knobs, energy = knobs_of(args)
    from stages.methods import lm as methods   # the plugin registry (after the params check)

    method = methods.get(args.method)
    all_knobs = [method.validate(k) for k in all_knobs]   # every width checked before any work
    require_dir(args.input, "input model folder"), require_dir(args.teacher, "teacher (base) folder")
    lm_record.read(args.input)
    pin_cpu_numerics(all_knobs[0].get("threads", 2))   # the weights this writes are results: fixed kernel paths
    who = f"methods.{args.method}" if args.sweep or args.bits else f"compress.{args.node}"
    for knobs in all_knobs:
        require_device(knobs.get("device", "cpu"), who)   # before any work: the device,
        method.check(args.input, knobs)                 # the architecture, packing, chain
    calib = [r["text"] for r in read_jsonl(args.calib, "calibration file")] if method.needs_calibration \
        or method.needs_teacher else None
    meter = E.open_meter(energy, all_knobs[0].get("device", "cpu"))
    if not args.sweep:
        return apply(method, all_knobs[0], args, calib, meter, args.out, args.metrics)
    with atomic_path(args.out) as out, atomic_path(args.metrics) as metrics:
        out.mkdir(), metrics.mkdir()
        for knobs in all_knobs:
            apply(method, knobs, args, calib, meter, out / f"int{knobs['bits']}", metrics / f"int{knobs['bits']}.json")


if __name__ == "__main__":
    run_main(main)
