"""Build one ONNX Runtime GenAI variant of the language model (lm_runtimes.variants).

ort-fp32 / ort-int8 / ort-int4: the builder from the base folder (int8/int4: RTN MatMulNBits).
ort-gptq: every width of quant.bits in the pipeline's GPTQ folder, repacked by the builder's
GPTQ loader, into <out>/int<bits>/. A width the builder cannot pack is a clear error.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import atomic_path, require_dir
from stages.methods import gptq_v1, ort_build
from stages.runtimes.ort_genai_lm import require
from stages.schema import params as P

PARAMS = ("lm_runtimes.ort", "quant.bits")
GPTQ_BITS = (8, 4, 2)   # widths the builder's GPTQ loader packs into MatMulNBits


def build_gptq(gptq: Path, out: Path, bits: list[int], knobs: dict) -> None:
    bad = [b for b in bits if b not in GPTQ_BITS]
    if bad:
        raise PipelineError(f"ort-gptq: the onnxruntime-genai builder packs GPTQ widths "
                            f"{GPTQ_BITS}, not {bad} (quant.bits); drop ort-gptq or those widths")
    out.mkdir()
    for b in sorted(bits, reverse=True):
        src = require_dir(gptq / f"int{b}", "GPTQ model folder")
        with tempfile.TemporaryDirectory(prefix="gptq-v1-") as tmp, timed(f"building ort-gptq int{b}"):
            v1 = Path(tmp) / "model"
            gptq_v1.to_v1(src, v1)
            ort_build.run_builder(v1, out / f"int{b}", "int8" if b == 8 else "int4", knobs, gptq=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--gptq", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    knobs, bits = p["lm_runtimes"]["ort"].plain(), list(p["quant"]["bits"])
    if not args.variant.startswith("ort-"):
        raise PipelineError(f"lm_build_ort builds ort-* variants, not {args.variant!r}")
    precision = args.variant.removeprefix("ort-")
    require(), require("onnx_ir")
    with atomic_path(args.out) as tmp:
        if precision == "gptq":
            build_gptq(args.gptq, tmp, bits, knobs)
        else:
            with timed(f"building {args.variant}"):
                ort_build.run_builder(require_dir(args.base, "base model folder"), tmp, precision, knobs)


if __name__ == "__main__":
    run_main(main)
