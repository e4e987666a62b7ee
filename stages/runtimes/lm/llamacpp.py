"""llama.cpp (llama-cpp-python, a CPU build) as an LM runtime. Built with llama.cpp's own HF
converter (f32/f16) and quantizer (q8_0/q4_0/q4_1/q4_k_m, from an f32 conversion): see
stages/methods/gguf_build.py. llama.cpp computes the logits of the newest position only (no
logits_all): scoring feeds the artifact's HF tokenizer ids up to the first scored position in one
Llama.eval, then one id per later position on the KV cache (as ONNX Runtime GenAI's session does),
so the LM head runs on the scored rows alone; generation evaluates one token at a time and reads
the newest logits, as an application of the library does."""
from __future__ import annotations

import contextlib
import ctypes
import sys
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from stages.core.errors import PipelineError, log
from stages.methods import gguf_build
from stages.runtimes import llamacpp_lm as R
from stages.runtimes.lm.base import Knobs, LmRuntime, Session, read_config

GGUF = "model.gguf"
# q4_1: 4 bits with a float16 step and minimum per 32-column block; a base dequantized from a
# Q4_1 file (SmolLM2's package) comes back onto its own grid. Registered here rather than in
# gguf_build.FTYPES because every LM stage depends on gguf_build.py and only llama.cpp's on this file.
gguf_build.FTYPES.setdefault("q4_1", "LLAMA_FTYPE_MOSTLY_Q4_1")


class LlamaSession(Session):
    def __init__(self, path: Path, threads: int):
        self.path, self.threads, self.llm, self.n_ctx = path, threads, None, 0
        self._ready(1)   # load now: a bad file fails in open(), not at the first example

    def _ready(self, n: int):
        """A Llama whose context holds n tokens (re-made, doubled, when one does not)."""
        if n > self.n_ctx:
            self.n_ctx = max(512, 2 * self.n_ctx, 64 * -(-n // 64))
            self.llm = None   # free the old context first
            self.llm = R.load(self.path, self.threads, self.n_ctx, logits_all=False)
        return self.llm

    def logits(self, ids: list[int]) -> np.ndarray:
        return self.tail_logits(ids, len(ids))

    def tail_logits(self, ids: list[int], n: int) -> np.ndarray:
        """The prefix up to the first scored position in one eval, then one step per later one."""
        self.reset(len(ids) + 1)
        cut = len(ids) - n + 1
        return np.stack([self.step(ids[:cut])] + [self.step([t]) for t in ids[cut:]])

    def reset(self, max_tokens: int = 512) -> None:
        self._ready(max_tokens).reset()

    def step(self, ids: list[int]) -> np.ndarray:
        self.llm.eval(ids)
        vocab = self.llm.n_vocab()   # only the last position's logits are computed
        return np.ctypeslib.as_array(ctypes.cast(self.llm._ctx.get_logits(), ctypes.POINTER(ctypes.c_float)),
                                     shape=(vocab,)).copy()


@contextlib.contextmanager
def warnings_only():
    """llama.cpp's errors on stderr, its warnings summed up in one line: its quantizer logs one
    line per tensor (and a warning per tensor that falls back to another type). llama-cpp-python's
    own filter cannot do it (its level table predates ggml's current enum, ggml.h: DEBUG 1,
    INFO 2, WARN 3, ERROR 4, CONT 5), so a callback is set for the block."""
    llama_cpp = R.require()
    from llama_cpp import _logger
    last, warned = [0], []

    @llama_cpp.llama_log_callback
    def callback(level, text, _):
        last[0] = last[0] if level == 5 else level   # CONT continues the previous line's level
        if last[0] == 4:
            sys.stderr.write(text.decode("utf-8", "replace"))
        elif last[0] == 3:
            warned.append(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    try:
        yield
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        lines = [w.strip() for w in "".join(warned).splitlines() if w.strip()]
        if lines:
            log.warning("llama.cpp: %d warning lines, the last: %s", len(lines), lines[-1])


class LlamaKnobs(Knobs):
    precision: Literal["f32", "f16", "q8_0", "q4_0", "q4_1", "q4_k_m"] = "f16"   # the converter's or the quantizer's type
    threads: int = Field(2, ge=1)                                      # the quantizer's threads


class LlamaCpp(LmRuntime):
    name = "llamacpp"
    modules = ("llama_cpp", "gguf")
    packages = ("llama-cpp-python", "gguf")
    precisions = {"f32": 32, "f16": 16, "q8_0": 8, "q4_0": 4, "q4_1": 4, "q4_k_m": 4}
    knobs = LlamaKnobs

    def _build(self, source: Path, out: Path, knobs: dict) -> dict:
        gguf_build.converter()   # a missing converter: one line, before any work
        out.mkdir(parents=True)
        with warnings_only():   # lm_build logs and times the whole build
            gguf_build.build(knobs["precision"], source, out / GGUF, knobs.get("threads", 2))
        tensors = R.tensors(out / GGUF)
        head = "output.weight" if "output.weight" in tensors else "token_embd.weight"
        return {"tensor_types": R.type_counts(out / GGUF), "head_type": tensors[head][0]}

    def _open(self, folder: Path, threads: int, knobs: dict, full_logits: bool) -> Session:
        path = Path(folder) / GGUF
        vocab, expected = R.vocab_size(path), read_config(folder).get("vocab_size")
        if expected is not None and vocab != expected:
            raise PipelineError(f"{path} has {vocab} tokens, its config.json {expected}: not the same model")
        return LlamaSession(path, threads)   # full_logits: scoring reads its rows by steps too

    def weight_bytes_per_token(self, folder: Path) -> int:
        return R.weight_bytes_per_token(Path(folder) / GGUF)


RUNTIME = LlamaCpp()
