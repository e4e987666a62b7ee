"""PyTorch (transformers) runtime of the language model: loading with the GPTQ kernel the
quantization config selects, the kernels each layer actually runs, and batched scoring."""
from __future__ import annotations

import collections
import json
import os
import re
from pathlib import Path

from tqdm import tqdm

from stages.core.errors import PipelineError
from stages.schema.kernels import AUTO, KERNELS, kernel_for
from stages.tasks import lambada as S


def discover(models: Path) -> dict[str, Path]:
    """{"base": folder} for a model folder, else {"int8": .., "int4": ..} (widest first)."""
    if (models / "config.json").is_file():
        return {"base": models}
    subs = [d for d in models.glob("int*") if re.fullmatch(r"int\d+", d.name)
            and (d / "config.json").is_file()] if models.is_dir() else []
    if not subs:
        raise PipelineError(f"no model folder (config.json) nor int<bits>/ subfolders in {models}")
    return {d.name: d for d in sorted(subs, key=lambda d: -int(d.name[3:]))}


def setup(device: str, threads: int, key: str) -> None:
    """Offline hub, the device checked, torch's intra-op threads set (`key` names the param)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"{key}=cuda but no CUDA device is available")
    torch.set_num_threads(threads)


def bits_of(folder) -> int:
    """Weight bits of a model folder, from its config (32 when not quantized)."""
    qc = json.loads((Path(folder) / "config.json").read_text()).get("quantization_config")
    return int(qc["bits"]) if qc else 32


def method_of(folder) -> str:
    """The quantization method of a model folder: "gptq", "awq", or "none"."""
    qc = json.loads((Path(folder) / "config.json").read_text()).get("quantization_config")
    return qc.get("quant_method", "gptq") if qc else "none"


def load(folder, device: str, backend: str | dict = AUTO):
    """Model and tokenizer. A GPTQ folder loads with the kernel `backend` names for its width
    (eval_lm.backend); the layers must then really be that kernel's, never a fallback. An AWQ
    folder loads in float32 (float16 on CUDA) with GPTQModel's pick of its AWQ kernels (on a CPU the int4pack
    TorchAtenAwqLinear, the AWQ twin of gptq_torch_aten), recorded by `kernels`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, AwqConfig, GPTQConfig

    tok = AutoTokenizer.from_pretrained(folder)
    qc = json.loads((Path(folder) / "config.json").read_text()).get("quantization_config")
    if not qc:
        return AutoModelForCausalLM.from_pretrained(folder, device_map=device).eval(), tok
    if method_of(folder) == "awq":
        return AutoModelForCausalLM.from_pretrained(
            folder, device_map=device,   # CPU: float32 as the base; CUDA: AWQ's GEMM kernels take fp16
            dtype=torch.float32 if device == "cpu" else torch.float16,
            # CUDA: the Triton GEMM, since auto's Marlin/GEMM build a C++ extension at load (minutes)
            quantization_config=AwqConfig(bits=qc["bits"], backend="auto" if device == "cpu"
                                          else "gemm_triton")).eval(), tok
    name = kernel_for(backend, qc["bits"])
    model = AutoModelForCausalLM.from_pretrained(
        folder, device_map=device, quantization_config=GPTQConfig(bits=qc["bits"], backend=name)).eval()
    ran = kernels(model)
    if name != AUTO and set(ran) - {"Linear"} != {KERNELS[name].layer}:
        raise PipelineError(f"{folder}: asked for kernel {name} but the layers run {ran}")
    return model, tok


def bits(model) -> int:
    qc = getattr(model.config, "quantization_config", None)
    return int((qc.get("bits") if isinstance(qc, dict) else getattr(qc, "bits", None)) or 32)


def kernels(model) -> dict[str, int]:
    """Layer class -> number of such layers, for every linear-like layer (the GPTQ kernel
    classes, e.g. TorchAtenLinear or MarlinLinear, or plain Linear)."""
    names = (type(m).__name__ for m in model.modules())
    return dict(sorted(collections.Counter(n for n in names if n.endswith("Linear")).items()))


def param_mb(model) -> float:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 1e6


def score_all(model, reqs, pad_id: int, batch_size: int, k: int, naive: bool = False) -> list[dict]:
    """Per-example scores, in input order. Batched: right padding + attention mask, and the
    LM head applied only at the positions that predict the target. naive: one example at a
    time with full logits (the baseline for the speed-up; identical scores)."""
    dev, scores = model.device, [None] * len(reqs)
    batches = [[i] for i in range(len(reqs))] if naive else \
        S.length_sorted_batches([len(r[0]) for r in reqs], batch_size)
    for batch in tqdm(batches, desc="scoring", unit="batch", disable=None):
        ids, mask = S.pad_right([reqs[i][0] for i in batch], pad_id)
        if naive:
            logits = model(input_ids=ids.to(dev)).logits[0]
            n, inp = reqs[batch[0]][1], len(reqs[batch[0]][0])
            scores[batch[0]] = S.score_continuation(logits[inp - n:inp], reqs[batch[0]][2], k)
            continue
        hidden = model.get_decoder()(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state
        for row, i in enumerate(batch):
            inp, n, cont = len(reqs[i][0]), reqs[i][1], reqs[i][2]
            rows = model.get_output_embeddings()(hidden[row, inp - n:inp])
            scores[i] = S.score_continuation(rows, cont, k)
    return scores


def pad_id(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
