"""ONNX Runtime GenAI as an LM runtime. Built by the onnxruntime-genai model builder from an HF
folder: fp32, or int8/int4 round-to-nearest MatMulNBits; a GPTQ folder is repacked by the
builder's GPTQ loader at its own width (stages/methods/ort_build.py). Generation runs
og.Generator, the path a deployment runs, for generation and scoring alike."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np

from stages.core.errors import PipelineError
from stages.methods import ort_build
from stages.runtimes import ort_genai_lm as R
from stages.runtimes.lm.base import Knobs, LmRuntime, Session, read_config

# The builder's model list (onnxruntime_genai/models/builder.py, 0.18), architectures only.
BUILDER_ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM", "SmolLM3ForCausalLM"})
GPTQ_BITS = (8, 4, 2)   # widths the builder's GPTQ loader packs into MatMulNBits


class OrtSession(Session):
    """og.Generator over the built graph: its own KV cache (a sliding-window one for Gemma 3)."""

    def __init__(self, folder: Path, threads: int):
        og = R.require()
        config = og.Config(str(folder))
        config.clear_providers()
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
        self.og, self.model, self.gen = og, og.Model(config), None
        # a sliding-window GroupQueryAttention needs a cache of at least the window (Gemma 3: 512)
        self.min_cache = int(read_config(folder).get("sliding_window") or 0)

    def logits(self, ids: list[int]) -> np.ndarray:
        return self.tail_logits(ids, len(ids))

    def tail_logits(self, ids: list[int], n: int) -> np.ndarray:
        """The prefix in one forward, then one step per later position (og.Generator gives only
        the newest position's logits)."""
        self.reset(len(ids) + 1)
        cut = len(ids) - n + 1
        return np.stack([self.step(ids[:cut])] + [self.step([t]) for t in ids[cut:]])

    def reset(self, max_tokens: int = 512) -> None:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=max(max_tokens, self.min_cache))   # og's KV buffer
        self.gen = self.og.Generator(self.model, params)

    def step(self, ids: list[int]) -> np.ndarray:
        self.gen.append_tokens(ids)
        out = np.asarray(self.gen.get_logits(), dtype=np.float32)
        return out.reshape(-1, out.shape[-1])[-1]


class OrtKnobs(Knobs):
    precision: Literal["fp32", "int8", "int4"] = "fp32"   # int8/int4: RTN MatMulNBits (a GPTQ source keeps its width)
    block_size: Literal[16, 32, 64, 128, 256] = 32       # columns per MatMulNBits scale
    accuracy_level: Literal[0, 1, 2, 3, 4] = 4            # MatMulNBits compute type: 4 = int8 activations, 1 = fp32
    quantize_head: bool = True                            # RTN: the builder's head (True) or one fp32 table
    gptq_head: Literal["fp32", "int8", "int4"] = "int8"   # a GPTQ source's tied head


class OrtGenai(LmRuntime):
    name = "ort_genai"
    modules = ("onnxruntime_genai", "onnxruntime", "onnx_ir")
    packages = ("onnxruntime", "onnxruntime-genai", "onnx", "onnx-ir")
    precisions = {"fp32": 32, "int8": 8, "int4": 4}
    knobs = OrtKnobs
    architectures = BUILDER_ARCHITECTURES
    quantized_sources = frozenset({"gptq"})

    def check(self, source: Path, knobs: dict) -> None:
        super().check(source, knobs)
        qc = read_config(source).get("quantization_config") or {}
        if qc and int(qc["bits"]) not in GPTQ_BITS:
            raise PipelineError(f"the onnxruntime-genai builder packs GPTQ widths {GPTQ_BITS}, "
                                f"not {qc['bits']} ({source})")

    def _build(self, source: Path, out: Path, knobs: dict) -> dict:
        """The builder on the float source at `precision`, or on a GPTQ source at its width
        (after the gptq_v2 -> v1 zero-point repack the builder's loader expects)."""
        qc = read_config(source).get("quantization_config")
        if not qc:
            ort_build.run_builder(source, out, knobs["precision"], knobs)
        else:
            ort_build.build_gptq(source, out, int(qc["bits"]), knobs)
        return {"head_type": ort_build.head_type(out)}

    def _open(self, folder: Path, threads: int, knobs: dict, full_logits: bool) -> Session:
        return OrtSession(Path(folder), threads)

    def weight_bytes_per_token(self, folder: Path) -> int:
        return R.weight_bytes_per_token(Path(folder))


RUNTIME = OrtGenai()
