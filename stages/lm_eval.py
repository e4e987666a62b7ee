"""LAMBADA accuracy, perplexity, top-k and speed of the base or the GPTQ models.

--models is one HF model folder (variant "base") or a folder of int*/ subfolders.
Scoring follows lm-evaluation-harness lambada_openai (see lm_scoring.py), in padded,
length-sorted batches; --naive scores one example at a time (for the speed comparison).
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from stages import lm_scoring as S
from stages.lm_speed import speeds
from stages.common import (PipelineError, dir_size_mb, get_param, load_params, require_choice,
                           require_file, require_int, run_main, timed, write_json)


def validate(params: dict) -> dict:
    e = lambda key: get_param(params, f"eval_lm.{key}")  # noqa: E731
    cfg = {key: require_int(f"eval_lm.{key}", e(key), low) for key, low in [
        ("k", 1), ("limit", 0), ("batch_size", 1), ("threads", 1), ("decode_tokens", 1),
        ("prefill_tokens", 1), ("speed_repeats", 1)]}
    cfg["device"] = require_choice("eval_lm.device", e("device"), {"cpu", "cuda"})
    return cfg


def discover(models: Path) -> dict[str, Path]:
    """{"base": folder} for a model folder, else {"int8": .., "int4": ..} (widest first)."""
    if (models / "config.json").is_file():
        return {"base": models}
    subs = [d for d in models.glob("int*") if re.fullmatch(r"int\d+", d.name)
            and (d / "config.json").is_file()] if models.is_dir() else []
    if not subs:
        raise PipelineError(f"no model folder (config.json) nor int<bits>/ subfolders in {models}")
    return {d.name: d for d in sorted(subs, key=lambda d: -int(d.name[3:]))}


def read_texts(path: Path, limit: int) -> list[str]:
    """The "text" column of eval.jsonl (first `limit` rows; 0 = all), via datasets."""
    os.environ.setdefault("USE_TF", "0")  # datasets would otherwise import TensorFlow
    import datasets

    require_file(path, "evaluation file")
    with tempfile.TemporaryDirectory() as cache:
        try:
            ds = datasets.load_dataset("json", data_files=str(path), split="train",
                                       cache_dir=cache, keep_in_memory=True)
        except Exception as exc:  # datasets raises several unrelated types for bad JSON
            raise PipelineError(f"evaluation file {path} is unreadable: {exc}") from None
    if "text" not in ds.column_names or len(ds) == 0:
        raise PipelineError(f'evaluation file {path} has no "text" rows')
    return list(ds["text"][:limit] if limit else ds["text"])


def encode_examples(tok, texts: list[str], max_length: int) -> list[tuple[list[int], int]]:
    """(model input ids, number of target ids, target ids) per example."""
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731  (harness default)
    reqs = []
    for text in texts:
        ctx, cont = S.encode_pair(enc, *S.split_example(text))
        reqs.append((*S.build_inputs(ctx, cont, max_length), cont))
    return reqs


def score_all(model, reqs, pad_id: int, batch_size: int, k: int, naive: bool) -> list[dict]:
    """Per-example scores, in input order. Batched: right padding + attention mask, and the
    LM head applied only at the positions that predict the target."""
    import torch

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


def evaluate(folder: Path, texts: list[str], cfg: dict, naive: bool = False) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, device_map=cfg["device"]).eval()
    qc = getattr(model.config, "quantization_config", None)
    bits = (qc.get("bits") if isinstance(qc, dict) else getattr(qc, "bits", None)) or 32
    param_mb = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 1e6
    reqs = encode_examples(tok, texts, getattr(model.config, "max_position_embeddings", 2048))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with torch.inference_mode():
        t0 = time.perf_counter()
        scores = score_all(model, reqs, pad, cfg["batch_size"], cfg["k"], naive)
        seconds = time.perf_counter() - t0
        result = S.aggregate(scores, cfg["k"])
        result.update(speeds(model, tok, texts, cfg))
    result.update(eval_examples_per_s=len(texts) / seconds, size_mb=dir_size_mb(folder),
                  param_mb=param_mb, bits=int(bits))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--naive", action="store_true", help="batch-1 loop, full logits (baseline)")
    args = ap.parse_args(argv)
    cfg = validate(load_params(args.params))
    variants = discover(args.models)
    texts = read_texts(args.data, cfg["limit"])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise PipelineError("eval_lm.device=cuda but no CUDA device is available")
    torch.set_num_threads(cfg["threads"])
    results = {}
    for name, folder in variants.items():
        with timed(f"evaluating {name} on {len(texts)} examples"):
            results[name] = evaluate(folder, texts, cfg, args.naive)
    write_json(args.out, results)


if __name__ == "__main__":
    run_main(main)
