"""GPTQ-quantize the base model at every quant.bits, through transformers.GPTQConfig.

transformers hands the work to optimum's GPTQQuantizer with the GPTQModel backend; on
CPU the packed layers run GPTQModel's pure-torch kernel (TorchAtenLinear), on CUDA its
GPU kernels. One stage loops over the bit widths, so `-S quant.bits=4` (a scalar) works.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from stages.common import (PipelineError, as_list, atomic_path, dir_size_mb, get_param, load_params,
                           require_choice, require_dir, require_file, require_int, require_number,
                           run_main, timed, write_json)

GPTQ_BITS = (2, 3, 4, 8)  # widths GPTQ packs (transformers.GPTQConfig accepts exactly these)


def validate(params: dict) -> dict:
    q = lambda key: get_param(params, f"quant.{key}")  # noqa: E731
    bits = [require_int("quant.bits", b) for b in as_list(q("bits"))]
    bad = [b for b in bits if b not in GPTQ_BITS]
    if bad or not bits or len(set(bits)) != len(bits):
        raise PipelineError(f"quant.bits must be distinct values from {GPTQ_BITS}, got {q('bits')!r}")
    group_size = require_int("quant.group_size", q("group_size"))
    if group_size <= 0 and group_size != -1:
        raise PipelineError(f"quant.group_size must be > 0 or -1 (one group per row), got {group_size}")
    damp = require_number("quant.damp_percent", q("damp_percent"), 0, 1, open_ends=True)
    if not isinstance(q("desc_act"), bool):
        raise PipelineError(f"quant.desc_act must be true or false, got {q('desc_act')!r}")
    return {"seed": require_int("seed", get_param(params, "seed"), 0), "bits": bits,
            "group_size": group_size, "damp_percent": damp, "desc_act": q("desc_act"),
            "calib_size": require_int("quant.calib_size", q("calib_size"), 1),
            "calib_seq_len": require_int("quant.calib_seq_len", q("calib_seq_len"), 8),
            "device": require_choice("quant.device", q("device"), {"cpu", "cuda"})}


def read_calibration(path: Path, calib_size: int, seed: int) -> list[str]:
    """calib_size passages drawn (seeded) from calib.jsonl; too few is an error."""
    lines = [ln for ln in require_file(path, "calibration file").read_text().splitlines() if ln.strip()]
    if calib_size > len(lines):
        raise PipelineError(f"quant.calib_size={calib_size} exceeds the {len(lines)} calibration "
                            f"passages in {path}")
    picked = sorted(random.Random(seed).sample(range(len(lines)), calib_size))
    try:
        return [json.loads(lines[i])["text"] for i in picked]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PipelineError(f"calibration file {path} is corrupt: {exc!r}") from None


def tokenized_calibration(tok, texts: list[str], seq_len: int) -> list[dict]:
    """Pre-tokenized examples truncated to seq_len tokens (optimum would not truncate
    a list of strings; a list of dicts is passed through as is)."""
    out = []
    for t in texts:
        ids = tok(t, add_special_tokens=False, truncation=True, max_length=seq_len)["input_ids"]
        out.append({"input_ids": [ids], "attention_mask": [[1] * len(ids)]})
    return out


def quantize_one(base: Path, tok, calib: list[dict], bits: int, cfg: dict, dest: Path) -> float:
    """Quantize at `bits`, save to dest, return the quantization time in seconds."""
    import torch
    from transformers import AutoModelForCausalLM, GPTQConfig

    torch.manual_seed(cfg["seed"])
    gptq = GPTQConfig(
        bits=bits,
        group_size=cfg["group_size"],      # columns sharing one scale/zero point (-1: whole row)
        dataset=calib,                     # calib_size passages, calib_seq_len tokens each
        damp_percent=cfg["damp_percent"],  # Hessian dampening, fraction of its mean diagonal
        desc_act=cfg["desc_act"],          # act-order: columns by decreasing Hessian diagonal
        tokenizer=tok, model_seqlen=cfg["calib_seq_len"])
    dtype = torch.float16 if cfg["device"] == "cuda" else torch.float32
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(base, quantization_config=gptq,
                                                 device_map=cfg["device"], dtype=dtype)
    seconds = time.perf_counter() - t0
    qc = model.config.quantization_config  # do not write the calibration ids into config.json
    if isinstance(qc, dict):
        qc["dataset"] = None
    else:
        qc.dataset = None
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    del model
    return seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--calib", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--metrics", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    cfg = validate(load_params(args.params))
    require_dir(args.base, "base model folder")
    texts = read_calibration(args.calib, cfg["calib_size"], cfg["seed"])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer

    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise PipelineError("quant.device=cuda but no CUDA device is available")
    tok = AutoTokenizer.from_pretrained(args.base)
    calib = tokenized_calibration(tok, texts, cfg["calib_seq_len"])
    metrics = {}
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        for bits in cfg["bits"]:
            with timed(f"GPTQ int{bits} on {cfg['device']} ({len(calib)} passages)"):
                seconds = quantize_one(args.base, tok, calib, bits, cfg, tmp / f"int{bits}")
            metrics[f"int{bits}"] = {"bits": bits, "group_size": cfg["group_size"],
                                     "quant_time_s": round(seconds, 2),
                                     "size_mb": round(dir_size_mb(tmp / f"int{bits}"), 2)}
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_main(main)
