"""One variant's artifact: a node's model folder built for a runtime
(stages/runtimes/lm/<runtime>.py) with its knobs (the runtime's defaults under `runtimes`, then
a `variants` entry's own), plus record.json: the node's record, the runtime and its knobs. The
build is metered (energy, time); unsupported inputs are refused before any work. A quant sweep
folder (int<bits>/ subfolders) is built width by width into the same layout."""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import run_main, timed
from stages.core.files import atomic_path, dir_size_mb, require_dir, write_json
from stages.meters import energy as E
from stages.models import lm_record
from stages.schema.common import Energy
from stages.schema.lm_tables import Variant
from stages.schema.load import load_sections

# per stage (one entry serves both): a table variant reads its entry, a sweep variant its runtime's defaults
PARAMS = {"lm_build": ("variants.${key}", "runtimes.${item.runtime}") + E.PARAMS,
          "lm_sweep_build": ("runtimes.${item.runtime}",) + E.PARAMS}


def knobs_of(args) -> tuple[dict, dict]:
    keys = (f"runtimes.{args.runtime}",) + E.PARAMS
    schemas = {"runtimes": dict[str, dict], "energy": Energy}
    own = {}
    if args.variant:
        keys, schemas["variants"] = (f"variants.{args.variant}",) + keys, dict[str, Variant]
    p = load_sections(args.params, keys, schemas)
    if args.variant:
        own = {k: v for k, v in p["variants"][args.variant].plain().items() if k not in ("node", "runtime")}
    return {**p["runtimes"].get(args.runtime, {}), **own}, p["energy"]


def build(rt, knobs: dict, node: Path, out: Path, metrics: Path, meter) -> None:
    """One artifact: the node built for the runtime, with its record and metrics."""
    record = {**lm_record.read(node), "runtime": rt.name, "knobs": knobs, "versions": rt.versions()}
    with atomic_path(out) as tmp, timed(f"building {lm_record.name(record)}"):
        info, cost = meter.once(lambda: rt.build(node, tmp, knobs), 1, "run")
        lm_record.write(tmp, record)
        size = dir_size_mb(tmp)
    write_json(metrics, {"record": record, "build": info, "size_mb": round(size, 2),
                         "build_time_s": round(cost["seconds"], 2), "build_energy": cost})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--node", "--out", "--metrics"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--runtime", required=True)
    ap.add_argument("--variant", help="a `variants` entry (its knobs); none: a quant sweep folder")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    knobs, energy = knobs_of(args)
    from stages.runtimes import lm as runtimes   # the plugin registry (after the params check)

    rt = runtimes.get(args.runtime)
    knobs = rt.validate(knobs)
    require_dir(args.node, "node model folder")
    units = lm_record.units(args.node)
    for _, node in units:
        rt.check(node, knobs)   # architecture, quantized input: before any work
    meter = E.open_meter(energy)
    if units[0][0] == "":
        return build(rt, knobs, args.node, args.out, args.metrics, meter)
    with atomic_path(args.out) as out, atomic_path(args.metrics) as metrics:   # a sweep: int<bits>/ each
        out.mkdir(), metrics.mkdir()
        for name, node in units:
            build(rt, knobs, node, out / name, metrics / f"{name}.json", meter)


if __name__ == "__main__":
    run_main(main)
