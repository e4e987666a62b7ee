"""llama.cpp (llama-cpp-python, a CPU build) as an LM runtime. Built with llama.cpp's own HF
converter (f32/f16) and quantizer (q8_0/q4_0/q4_k_m, from an f32 conversion): see
stages/methods/gguf_build.py. Scoring feeds the artifact's HF tokenizer ids to Llama.eval with
logits_all=True; generation evaluates one token at a time on llama.cpp's KV cache and reads the
newest logits, as an application of the library does."""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from stages.core.errors import PipelineError
from stages.methods import gguf_build
from stages.runtimes import llamacpp_lm as R
from stages.runtimes.lm.base import Knobs, LmRuntime, Session, read_config

GGUF = "model.gguf"


class LlamaSession(Session):
    def __init__(self, path: Path, threads: int, full_logits: bool):
        self.path, self.threads, self.full, self.llm, self.n_ctx = path, threads, full_logits, None, 0
        self._ready(1)   # load now: a bad file fails in open(), not at the first example

    def _ready(self, n: int):
        """A Llama whose context holds n tokens (re-made, doubled, when one does not)."""
        if n > self.n_ctx:
            self.n_ctx = max(512, 2 * self.n_ctx, 64 * -(-n // 64))
            self.llm = None   # free the old context first
            self.llm = R.load(self.path, self.threads, self.n_ctx, logits_all=self.full)
        return self.llm

    def logits(self, ids: list[int]) -> np.ndarray:
        llm = self._ready(len(ids))
        llm.reset()
        llm.eval(ids)
        return np.array(llm.scores[:len(ids)], dtype=np.float32)

    def reset(self, max_tokens: int = 512) -> None:
        self._ready(max_tokens).reset()

    def step(self, ids: list[int]) -> np.ndarray:
        self.llm.eval(ids)
        if self.full:
            return np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32)
        vocab = self.llm.n_vocab()   # only the last position's logits were computed
        return np.ctypeslib.as_array(ctypes.cast(self.llm._ctx.get_logits(), ctypes.POINTER(ctypes.c_float)),
                                     shape=(vocab,)).copy()


class LlamaKnobs(Knobs):
    precision: Literal["f32", "f16", "q8_0", "q4_0", "q4_k_m"] = "f16"   # the converter's or the quantizer's type
    threads: int = Field(2, ge=1)                                      # the quantizer's threads


class LlamaCpp(LmRuntime):
    name = "llamacpp"
    modules = ("llama_cpp", "gguf")
    packages = ("llama-cpp-python", "gguf")
    precisions = {"f32": 32, "f16": 16, "q8_0": 8, "q4_0": 4, "q4_k_m": 4}
    knobs = LlamaKnobs

    def _build(self, source: Path, out: Path, knobs: dict) -> dict:
        gguf_build.converter()   # a missing converter: one line, before any work
        out.mkdir(parents=True)
        gguf_build.build(knobs["precision"], source, out / GGUF, knobs.get("threads", 2))
        tensors = R.tensors(out / GGUF)
        head = "output.weight" if "output.weight" in tensors else "token_embd.weight"
        return {"tensor_types": R.type_counts(out / GGUF), "head_type": tensors[head][0]}

    def _open(self, folder: Path, threads: int, knobs: dict, full_logits: bool) -> Session:
        path = Path(folder) / GGUF
        vocab, expected = R.vocab_size(path), read_config(folder).get("vocab_size")
        if expected is not None and vocab != expected:
            raise PipelineError(f"{path} has {vocab} tokens, its config.json {expected}: not the same model")
        return LlamaSession(path, threads, full_logits)

    def weight_bytes_per_token(self, folder: Path) -> int:
        return R.weight_bytes_per_token(Path(folder) / GGUF)


RUNTIME = LlamaCpp()
