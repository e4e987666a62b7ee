"""OpenVINO runtime of the language model: folders made by lm_build_ov (the onnxruntime-genai
builder's decoder graph, NNCF-compressed for int8/int4, as ONNX that OpenVINO reads: KV cache
as explicit past_key_values.* inputs and present.* outputs, positions from the attention mask).

optimum-intel 2.2 caps transformers below 5.6 (the project pins 5.23), so the graph comes from
the genai builder and is made stateful here with the transformation optimum-intel applies: the
request keeps the KV cache as state, and a decode step feeds only the new ids and the mask, as
a deployment does (copying present.* back as past_key_values.* gave the same logits, bit for
bit, 4-6 % slower). Scoring: one forward per example from an empty state, every position's logits.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError
from stages.meters import protocol
from stages.tasks import lambada as S

VERSIONS = ("openvino", "nncf")
IR = "model.onnx"   # read by OpenVINO's ONNX frontend (see stages/methods/ov_build.py)


def require(module: str = "openvino"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PipelineError(f"the OpenVINO runtime needs the pip package '{module}' ({exc}); "
                            "install the project's dependencies with `bash setup.sh`") from None


def decoder(folder: Path) -> dict:
    return json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]


# OpenVINO's CPU plugin runs int8/int4-compressed weights with the activations quantized to int8
# on the fly ("dynamic quantization"). On a CPU without VNNI (AVX2 only; seen in CI, reproduced
# with ONEDNN_MAX_CPU_ISA=AVX2) oneDNN has no primitive for that and the first infer fails with
# "could not create a primitive descriptor"; there it is switched off (fp32 activations, the
# same weights), and the metric files record which way each variant ran.
NO_DYNAMIC_QUANT = {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}
NO_PRIMITIVE = "could not create a primitive descriptor"


def compile_model(folder: Path, threads: int):
    """(compiled stateful model, its runtime_config), checked by a first infer."""
    ov = require()
    path = folder / IR
    if not path.is_file():
        raise PipelineError(f"no {IR} in {folder} (run lm_build_ov)")
    core = ov.Core()
    model = stateful(core.read_model(str(path)), decoder(folder))
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1}
    cm = core.compile_model(model, "CPU", config)
    if _runs(cm):
        return cm, {"dynamic_quantization": "on", "kv_cache": "stateful"}
    cm = core.compile_model(model, "CPU", {**config, **NO_DYNAMIC_QUANT})
    if _runs(cm):
        return cm, {"dynamic_quantization": "off: no oneDNN primitive for it on this CPU",
                    "kv_cache": "stateful"}
    raise PipelineError(f"OpenVINO cannot run {folder} on this CPU, with or without dynamic quantization")


def _runs(cm) -> bool:
    """A prefill and a decode step (both kinds of primitive get created). False where the CPU
    plugin has none for this CPU: the error above, or (the tiny test model) empty logits."""
    run = Decoder(cm)
    try:
        return [run.step(ids).shape[0] for ids in ([0, 0], [0])] == [2, 1]
    except (RuntimeError, IndexError) as exc:
        if isinstance(exc, RuntimeError) and NO_PRIMITIVE not in str(exc):
            raise
        return False


def stateful(model, dec: dict):
    """The KV cache as request state: batch 1, static heads and head size (the states start
    empty: [1, heads, 0, head_size]), then past_key_values.<i>.* -> present.<i>.* paired."""
    ov = require()
    from openvino._offline_transformations import apply_make_stateful_transformation

    pairs = {i.get_any_name(): i.get_any_name().replace("past_key_values.", "present.")
             for i in model.inputs if i.get_any_name().startswith("past_key_values.")}
    cache = ov.PartialShape([1, dec["num_key_value_heads"], -1, dec["head_size"]])
    model.reshape({i.get_any_name(): cache if i.get_any_name() in pairs else ov.PartialShape([1, -1])
                   for i in model.inputs})
    apply_make_stateful_transformation(model, pairs)
    return model


class Decoder:
    """One infer request over the compiled stateful graph; its state is the KV cache."""

    def __init__(self, cm):
        self.req = cm.create_infer_request()
        self.reset()

    def reset(self) -> None:
        self.req.reset_state()
        self.n = 0

    def step(self, ids: list[int]) -> np.ndarray:
        """Run `ids` after the cached ones; logits [len(ids), vocab] (a view, valid until the next step)."""
        ov = require()
        self.n += len(ids)
        self.req.set_tensor("input_ids", ov.Tensor(np.asarray([ids], dtype=np.int64)))
        self.req.set_tensor("attention_mask", ov.Tensor(np.ones((1, self.n), dtype=np.int64)))
        self.req.infer()
        return self.req.get_tensor("logits").data[0]


def score_all(folder: Path, reqs, k: int, threads: int, cm=None) -> list[dict]:
    """Per-example harness-exact scores, batch 1 (no padding), in input order."""
    import torch

    run, scores = Decoder(cm or compile_model(folder, threads)[0]), []
    for ids, n, cont in reqs:
        run.reset()
        logits = run.step(ids)
        scores.append(S.score_continuation(torch.from_numpy(logits[len(ids) - n:].copy()), cont, k))
    return scores


def speeds(folder: Path, ids: list[int], cfg: dict, meter=None) -> dict:
    """lm_speed's protocol: decode = exactly decode_tokens greedy new tokens after a 32-token
    prompt (batch 1, argmax of the last logits); prefill = one forward over prefill_tokens.
    Medians over speed_repeats after one warm-up; the KV cache is reset before every run."""
    cm, setting = compile_model(folder, cfg["threads"])
    run = Decoder(cm)
    prompt, prefill, n = ids[:32], ids[:cfg["prefill_tokens"]], cfg["decode_tokens"]

    def decode_all() -> float:
        t0 = time.perf_counter()
        run.reset()
        token = int(run.step(prompt)[-1].argmax())
        for _ in range(n - 1):
            token = int(run.step([token])[-1].argmax())
        return time.perf_counter() - t0

    def prefill_once() -> float:
        run.reset()
        t0 = time.perf_counter()
        run.step(prefill)
        return time.perf_counter() - t0

    return {**protocol.measure(prefill_once, decode_all, len(prefill), n, cfg["speed_repeats"], meter),
            "runtime_config": setting}


def weight_bytes_per_token(folder: Path) -> int:
    """Bytes of the weights one decode step reads, from the ONNX initializers, as for the ONNX
    Runtime rows (the tied table once, as the head; rotary caches left out)."""
    from stages.runtimes.ort_genai_lm import weight_bytes_per_token as onnx_bytes

    return onnx_bytes(folder)
