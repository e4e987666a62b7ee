"""Build one OpenVINO variant of the language model (lm_runtimes.openvino.variants): the base
exported from PyTorch as a stateful OpenVINO graph, NNCF weight compression for int8/int4
(stages/methods/ov_build.py), metered into --metrics (the compression cost of the OpenVINO rows).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import run_main, timed
from stages.core.files import atomic_path, require_dir
from stages.meters import energy as E
from stages.meters.build import metered
from stages.methods import ov_build
from stages.runtimes.openvino_lm import require
from stages.schema import metrics as M, params as P

PARAMS = ("lm_runtimes.openvino.group_size", "lm_runtimes.openvino.ratio") + E.PARAMS


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", required=True, help="fp32, int8 or int4")
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--metrics", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    knobs, name = p["lm_runtimes"]["openvino"], f"ov-{args.variant}"
    require(), require("nncf")   # before any work
    base, meter, types = require_dir(args.base, "base model folder"), E.open_meter(p["energy"]), {}
    with atomic_path(args.out) as tmp, timed(f"building {name}"):
        row = metered(meter, lambda: types.update(ov_build.build(base, tmp, args.variant, knobs)), tmp)
        row.tensor_types = types
        M.write(args.metrics, M.LmRtBuildFile({name: row}))   # inside: no metrics without the model


if __name__ == "__main__":
    run_main(main)
