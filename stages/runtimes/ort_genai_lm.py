"""ONNX Runtime GenAI runtime of the language model (folders made by lm_build_ort).

Scoring runs the exported decoder graph with a plain onnxruntime.InferenceSession and an
empty KV cache: one forward per example returns the logits of every position, which the
harness-exact scoring needs (og.Generator exposes only the newest position's logits).
Speed runs og.Generator, the path a deployment runs. Same graph and weights in both.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from stages.core.errors import PipelineError
from stages.tasks import lambada as S


def require(module: str = "onnxruntime_genai"):
    """Import a runtime package; a missing one is a one-line error naming it and setup.sh."""
    import importlib

    pip = {"onnxruntime_genai": "onnxruntime-genai", "onnxruntime": "onnxruntime",
           "onnx_ir": "onnx-ir"}[module]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PipelineError(f"the ONNX Runtime GenAI runtime needs the pip package '{pip}' "
                            f"({exc}); install the project's dependencies with `bash setup.sh`") from None


def session(folder: Path, threads: int):
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def forward(sess, ids: list[int]):
    """Logits [len(ids), vocab] (numpy float32) of one sequence, empty past KV cache."""
    import numpy as np

    n, feed = len(ids), {}
    dec = getattr(sess, "genai_decoder", {})
    for inp in sess.get_inputs():
        if inp.name == "input_ids":
            feed[inp.name] = np.asarray([ids], dtype=np.int64)
        elif inp.name == "attention_mask":
            feed[inp.name] = np.ones((1, n), dtype=np.int64)
        elif inp.name == "position_ids":
            feed[inp.name] = np.arange(n, dtype=np.int64)[None]
        elif inp.name.startswith("past_key_values."):
            heads, dim = dec["num_key_value_heads"], dec["head_size"]
            feed[inp.name] = np.zeros((1, heads, 0, dim), dtype=np.float32)
        else:
            raise PipelineError(f"unexpected decoder input {inp.name!r} in the ONNX model")
    return sess.run(["logits"], feed)[0][0]


def score_all(folder: Path, reqs, k: int, threads: int, sess=None) -> list[dict]:
    """Per-example harness-exact scores, batch 1 (no padding), in input order (sess: an open
    session(folder, threads), so that a meter can leave the load out)."""
    import torch

    sess, scores = sess or session(folder, threads), []
    sess.genai_decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    for ids, n, cont in reqs:
        logits = forward(sess, ids)
        scores.append(S.score_continuation(torch.from_numpy(logits[len(ids) - n:]), cont, k))
    return scores


def context_length(folder: Path) -> int:
    return int(json.loads((folder / "genai_config.json").read_text())["model"]["context_length"])


def tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def bench_ids(folder: Path, texts: list[str]) -> list[int]:
    """lm_speed's token stream (first 200 texts joined), tokenized before any timer."""
    return tokenizer(folder)("\n\n".join(texts[:200]), add_special_tokens=False)["input_ids"]


def speeds(folder: Path, ids: list[int], cfg: dict, meter=None) -> dict:
    """lm_speed's protocol through og.Generator: decode = exactly decode_tokens greedy new
    tokens after a 32-token prompt (batch 1); prefill = one forward over prefill_tokens.
    Medians over speed_repeats after one warm-up; tokenization happens before timing."""
    import statistics

    og = require()
    config = og.Config(str(folder))
    config.clear_providers()
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": cfg["threads"], "inter_op_num_threads": 1}}}}))
    model = og.Model(config)
    prompt, prefill, n = ids[:32], ids[:cfg["prefill_tokens"]], cfg["decode_tokens"]

    def decode_all() -> float:
        t0 = time.perf_counter()
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(prompt) + n, min_length=len(prompt) + n)
        gen = og.Generator(model, params)
        gen.append_tokens(prompt)
        while not gen.is_done():
            gen.generate_next_token()
        assert len(gen.get_sequence(0)) - len(prompt) == n, "decode did not make exactly n tokens"
        return time.perf_counter() - t0

    def prefill_once() -> float:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prefill) + 1)
        gen = og.Generator(model, params)
        t0 = time.perf_counter()
        gen.append_tokens(prefill)
        return time.perf_counter() - t0

    def timed(fn, units: int) -> tuple[float, dict | None]:
        """Median of speed_repeats runs after one warm-up; with a meter, one energy window per
        run (the window also spans the generator's set-up, which the prefill timer skips)."""
        times = []
        if meter is None:
            fn()  # warm-up
            times = [fn() for _ in range(cfg["speed_repeats"])]
            return statistics.median(times), None
        _, _, energy = meter.repeats(lambda: times.append(fn()), cfg["speed_repeats"], units, "token")
        return statistics.median(times[1:]), energy   # times[0]: the warm-up

    (t_prefill, e_prefill), (t_decode, e_decode) = timed(prefill_once, len(prefill)), timed(decode_all, n)
    out = {"decode_tokens_per_s": n / t_decode, "prefill_tokens_per_s": len(prefill) / t_prefill}
    return {**out, "energy_decode": e_decode, "energy_prefill": e_prefill} if meter else out


def weight_bytes_per_token(folder: Path) -> int:
    """Bytes of the weights one decode step reads: every initializer of the graph except the
    rotary caches (a decode step reads one row of them), the embedding's one row instead of
    the whole table unless the table is shared with the LM head (then read fully once)."""
    import onnx

    m = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    sizes = {}
    for t in m.graph.initializer:
        ext = {e.key: e.value for e in t.external_data}
        sizes[t.name] = int(ext["length"]) if "length" in ext else len(t.raw_data)
    gathers = [n for n in m.graph.node if n.op_type in ("Gather", "GatherBlockQuantized")
               and n.input[0] in sizes]
    heads = {i for n in m.graph.node if n.name.startswith("/lm_head/") for i in n.input}
    total = sum(v for k, v in sizes.items() if "cos_cache" not in k and "sin_cache" not in k)
    for g in gathers:   # an unshared embedding table: one row per token, not the table
        if g.input[0] not in heads:
            for name in g.input[:1] + list(g.input[2:]):
                rows = next((d.dims[0] for d in m.graph.initializer if d.name == name), 1)
                total -= sizes.get(name, 0) - sizes.get(name, 0) // max(rows, 1)
    return total
