"""Build one ONNX Runtime GenAI variant of the language model (lm_runtimes.variants).

ort-fp32 / ort-int8 / ort-int4: the builder from the base folder (int8/int4: RTN MatMulNBits).
ort-gptq: every width of quant.bits in the pipeline's GPTQ folder, repacked by the builder's
GPTQ loader, into <out>/int<bits>/. A width the builder cannot pack is a clear error.
Each builder run is metered (stages/meters/energy.py) into --metrics: the compression cost of
the ONNX Runtime rows (for ort-gptq, on top of lm_quantize's GPTQ energy).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import atomic_path, require_dir
from stages.meters import energy as E
from stages.meters.build import metered as build_cost
from stages.methods import ort_build
from stages.runtimes.ort_genai_lm import require
from stages.schema import metrics as M, params as P

PARAMS = ("lm_runtimes.ort", "quant.bits") + E.PARAMS
GPTQ_BITS = (8, 4, 2)   # widths the builder's GPTQ loader packs into MatMulNBits


def metered(meter: E.Meter, build, out: Path) -> M.LmRtBuild:
    """stages/meters/build's metered run, plus the head type read back from the built graph."""
    row = build_cost(meter, build, out)
    row.head_type = ort_build.head_type(out)
    return row


def build_gptq(gptq: Path, out: Path, bits: list[int], knobs: dict,
               meter: E.Meter) -> dict[str, M.LmRtBuild]:
    bad = [b for b in bits if b not in GPTQ_BITS]
    if bad:
        raise PipelineError(f"ort-gptq: the onnxruntime-genai builder packs GPTQ widths "
                            f"{GPTQ_BITS}, not {bad} (quant.bits); drop ort-gptq or those widths")
    out.mkdir()
    rows = {}
    for b in sorted(bits, reverse=True):
        src, dest = require_dir(gptq / f"int{b}", "GPTQ model folder"), out / f"int{b}"

        def build():  # the v1 repack is part of the build: metered with it
            with timed(f"building ort-gptq int{b}"):
                ort_build.build_gptq(src, dest, b, knobs)
        rows[f"ort-gptq-int{b}"] = metered(meter, build, dest)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--gptq", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--metrics", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    knobs, bits = p["lm_runtimes"]["ort"].plain(), list(p["quant"]["bits"])
    if not args.variant.startswith("ort-"):
        raise PipelineError(f"lm_build_ort builds ort-* variants, not {args.variant!r}")
    precision = args.variant.removeprefix("ort-")
    require(), require("onnx_ir")
    meter = E.open_meter(p["energy"])
    with atomic_path(args.out) as tmp:
        if precision == "gptq":
            rows = build_gptq(args.gptq, tmp, bits, knobs, meter)
        else:
            base = require_dir(args.base, "base model folder")
            with timed(f"building {args.variant}"):
                rows = {args.variant: metered(
                    meter, lambda: ort_build.run_builder(base, tmp, precision, knobs), tmp)}
        M.write(args.metrics, M.LmRtBuildFile(rows))  # inside: no metrics without the model


if __name__ == "__main__":
    run_main(main)
