"""ONNX Runtime GenAI as an LM runtime. Built by the onnxruntime-genai model builder from an HF
folder: fp32, or int8/int4 round-to-nearest MatMulNBits; a GPTQ folder is repacked by the
builder's GPTQ loader at its own width (stages/methods/ort_build.py). Generation runs
og.Generator, the path a deployment runs; scoring runs the same graph through a plain
onnxruntime session with an empty KV cache, since og.Generator exposes only the newest
position's logits."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError
from stages.methods import gptq_v1, ort_build
from stages.runtimes import ort_genai_lm as R
from stages.runtimes.lm.base import LmRuntime, Session, read_config

# The builder's model list (onnxruntime_genai/models/builder.py, 0.18), architectures only.
BUILDER_ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM", "SmolLM3ForCausalLM"})
GPTQ_BITS = (8, 4, 2)   # widths the builder's GPTQ loader packs into MatMulNBits


class OrtSession(Session):
    def __init__(self, folder: Path, threads: int, full_logits: bool):
        og = R.require()
        self.og, self.sess = og, R.session(folder, threads) if full_logits else None
        if self.sess is not None:
            self.sess.genai_decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
        config = og.Config(str(folder))
        config.clear_providers()
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
        self.model, self.gen = og.Model(config), None

    def logits(self, ids: list[int]) -> np.ndarray:
        return R.forward(self.sess, ids)

    def reset(self, max_tokens: int = 512) -> None:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=max_tokens)   # the KV buffer og allocates
        self.gen = self.og.Generator(self.model, params)

    def step(self, ids: list[int]) -> np.ndarray:
        self.gen.append_tokens(ids)
        out = np.asarray(self.gen.get_logits())
        return out.reshape(-1, out.shape[-1])[-1]


class OrtGenai(LmRuntime):
    name = "ort_genai"
    modules = ("onnxruntime_genai", "onnxruntime", "onnx_ir")
    packages = ("onnxruntime", "onnxruntime-genai", "onnx", "onnx-ir")
    precisions = {"fp32": 32, "int8": 8, "int4": 4}
    defaults = {"precision": "fp32", "block_size": 32, "accuracy_level": 4, "quantize_head": True,
                "gptq_head": "int8"}   # the builder knobs: stages/methods/ort_build.py
    architectures = BUILDER_ARCHITECTURES
    quantized_sources = frozenset({"gptq"})
    unsupported = {"Gemma3ForCausalLM": "the 0.18 builder reads a flat rope_parameters['rope_type'], "
                   "transformers 5 writes Gemma 3's per layer type (KeyError 'rope_type')"}

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
            with tempfile.TemporaryDirectory(prefix="gptq-v1-") as tmp:
                gptq_v1.to_v1(source, Path(tmp) / "model")
                ort_build.run_builder(Path(tmp) / "model", out, "int8" if qc["bits"] == 8 else "int4",
                                      knobs, gptq=True)
        return {"head_type": ort_build.head_type(out)}

    def open(self, folder: Path, threads: int, knobs: dict | None = None,
             full_logits: bool = True) -> Session:
        return OrtSession(Path(folder), threads, full_logits)

    def weight_bytes_per_token(self, folder: Path) -> int:
        return R.weight_bytes_per_token(Path(folder))


RUNTIME = OrtGenai()
