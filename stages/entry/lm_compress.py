"""One compression node: a method (stages/methods/lm/<method>.py) applied to its input node's
model folder, written as a model folder whose record.json is the input's plus this step.

Two kinds of node, one code path: a `compress` table entry (its knobs: the method's defaults
under `methods`, then the entry's own) and a `quant` sweep node (the method's defaults at
--bits). Calibration passages are the LAMBADA stage's calib.jsonl (never evaluated); the
teacher (distillation) is the model's base. The step is metered (energy, time).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import atomic_path, dir_size_mb, require_dir, write_json
from stages.core.numerics import pin_cpu_numerics
from stages.datasets.lambada import read_jsonl
from stages.meters import energy as E
from stages.models import lm_record
from stages.schema.lm_tables import Node
from stages.schema.load import load_sections
from stages.schema.common import Energy

# per stage (one entry serves both): a table node reads its entry, a sweep node only its method's
PARAMS = {"lm_compress": ("compress.${key}", "methods.${item.method}") + E.PARAMS,
          "lm_quant": ("methods.${item.method}",) + E.PARAMS}


def knobs_of(args) -> tuple[dict, dict]:
    """(the node's knobs, the energy section)."""
    if args.bits is None:
        keys = (f"compress.{args.node}", f"methods.{args.method}") + E.PARAMS
        p = load_sections(args.params, keys, {"compress": dict[str, Node], "methods": dict[str, dict],
                                              "energy": Energy})
        node = p["compress"][args.node].plain()
        if node["method"] != args.method:
            raise PipelineError(f"compress.{args.node}.method is {node['method']}, not --method {args.method}")
        own = {k: v for k, v in node.items() if k not in ("model", "input", "method")}
    else:
        keys = (f"methods.{args.method}",) + E.PARAMS
        p = load_sections(args.params, keys, {"methods": dict[str, dict], "energy": Energy})
        own = {"bits": args.bits}
    return {**p["methods"].get(args.method, {}), **own}, p["energy"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--input", "--teacher", "--calib", "--out", "--metrics"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--node", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--bits", type=int, help="a quant sweep node: the method at this width")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    knobs, energy = knobs_of(args)
    from stages.methods import lm as methods   # the plugin registry (after the params check)

    method = methods.get(args.method)
    knobs = method.validate(knobs)
    require_dir(args.input, "input model folder"), require_dir(args.teacher, "teacher (base) folder")
    record = lm_record.read(args.input)
    pin_cpu_numerics(knobs.get("threads", 2))   # the weights this writes are results: fixed kernel paths
    method.check(args.input, knobs)              # before any work: architecture, packing, chain
    calib = [r["text"] for r in read_jsonl(args.calib, "calibration file")] if method.needs_calibration \
        or method.needs_teacher else None
    meter = E.open_meter(energy, knobs.get("device", "cpu"))
    with atomic_path(args.out) as tmp, timed(f"{args.node}: {args.method} of {args.input}"):
        info, cost = meter.once(lambda: method.apply(args.input, tmp, knobs, calib, args.teacher), 1, "run")
        step = {"method": args.method, "knobs": knobs}
        lm_record.write(tmp, {**record, "chain": record["chain"] + [step]})
        size = dir_size_mb(tmp)
    write_json(args.metrics, {"record": {**record, "chain": record["chain"] + [step]},
                              "step": {**step, **info}, "size_mb": round(size, 2),
                              "compress_time_s": round(cost["seconds"], 2), "compress_energy": cost})


if __name__ == "__main__":
    run_main(main)
