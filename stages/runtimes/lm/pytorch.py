"""PyTorch (transformers) as an LM runtime: the artifact is the checkpoint itself (float, or a
GPTQ/AWQ folder run through GPTQModel's kernels, `backend` picking the GPTQ kernel), in eager
mode with transformers' DynamicCache as the KV cache."""
from __future__ import annotations

import shutil
from typing import Literal
from pathlib import Path

import numpy as np
from pydantic import field_validator

from stages.runtimes import torch_lm
from stages.runtimes.lm.base import Knobs, LmRuntime, Session, read_config
from stages.schema import kernels
from stages.schema.kernels import AUTO

ITEM_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "BF16": 2, "F16": 2, "I16": 2, "I8": 1, "U8": 1,
              "BOOL": 1}   # safetensors dtype -> bytes per element


class TorchSession(Session):
    def __init__(self, model):
        import torch

        self.torch, self.model, self.cache = torch, model, None

    def logits(self, ids: list[int]) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model(input_ids=self.torch.tensor([ids]), use_cache=False).logits[0]
        return out.float().numpy()

    def tail_logits_many(self, items: list[tuple[list[int], int]], batch_size: int = 8) -> list[np.ndarray]:
        """Length-sorted right-padded batches (every real token keeps its positions; causal
        attention never sees the pads after it), the LM head applied only to the tail rows."""
        from stages.tasks.lambada import length_sorted_batches, pad_right

        out: list = [None] * len(items)
        head, cap = self.model.get_output_embeddings(), getattr(self.model.config, "final_logit_softcapping", None)
        for batch in length_sorted_batches([len(ids) for ids, _ in items], batch_size):
            ids, mask = pad_right([items[i][0] for i in batch], 0)
            with self.torch.inference_mode():
                hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
                for row, i in enumerate(batch):
                    length, n = len(items[i][0]), items[i][1]
                    logits = head(hidden[row, length - n:length])
                    if cap:   # as the model's own forward (Gemma 2's soft cap)
                        logits = self.torch.tanh(logits / cap) * cap
                    out[i] = logits.float().numpy()
        return out

    def reset(self, max_tokens: int = 512) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)

    def step(self, ids: list[int]) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model(input_ids=self.torch.tensor([ids]), past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[0, -1].float().numpy()


class PyTorchKnobs(Knobs):
    precision: Literal["fp32", "bf16"] = "fp32"   # of the float tensors
    backend: str | dict[int, str] = AUTO         # GPTQ kernel of a GPTQ source, or one per width (stages/schema/kernels.py)

    @field_validator("backend")
    @classmethod
    def _kernels(cls, backend):
        """Every named kernel known and able to run its width on a CPU (a per-width map names
        its widths; one name is checked where it can run any)."""
        if backend == AUTO:
            return backend
        if isinstance(backend, str) and backend not in kernels.KERNELS:
            raise ValueError(f"unknown GPTQ kernel {backend!r}; choose from {[AUTO, *kernels.KERNELS]}")
        widths = sorted(backend) if isinstance(backend, dict) else sorted(kernels.KERNELS[backend].bits)
        kernels.check(backend, widths, "cpu")
        return backend


class PyTorch(LmRuntime):
    name = "pytorch"
    modules = ("torch", "transformers")
    packages = ("torch", "transformers", "gptqmodel")
    precisions = {"fp32": 32, "bf16": 16}   # of the float tensors (a GPTQ/AWQ source keeps its codes)
    knobs = PyTorchKnobs
    quantized_sources = frozenset({"gptq", "awq"})

    def _build(self, source: Path, out: Path, knobs: dict) -> dict:
        """The checkpoint as it is (fp32), or its float tensors cast to bfloat16 (bf16)."""
        if knobs.get("precision", "fp32") == "fp32" or read_config(source).get("quantization_config"):
            shutil.copytree(source, out)
        else:
            import torch
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
            model.save_pretrained(out)
        return {}

    def _open(self, folder: Path, threads: int, knobs: dict, full_logits: bool) -> Session:
        torch_lm.setup("cpu", threads, "threads")
        model, _ = torch_lm.load(folder, "cpu", knobs["backend"])
        return TorchSession(model)

    def weight_bytes_per_token(self, folder: Path) -> int:
        """Every tensor of the checkpoint once, except an untied input embedding, of which one
        row per token is read (a tied table is read whole, as the LM head)."""
        from safetensors import safe_open

        total, embed = 0, None
        for path in sorted(Path(folder).glob("*.safetensors")):
            with safe_open(str(path), "pt") as f:
                for key in f.keys():
                    s = f.get_slice(key)
                    size = int(np.prod(s.get_shape())) * ITEM_BYTES[s.get_dtype()]
                    total += size
                    if key.endswith("embed_tokens.weight"):
                        embed = (size, s.get_shape()[0])
        tied = read_config(folder).get("tie_word_embeddings", True)
        if embed and not tied:
            total -= embed[0] - embed[0] // embed[1]
        return total


RUNTIME = PyTorch()
