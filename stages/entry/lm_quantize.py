"""GPTQ-quantize the base model at every quant.bits (stages/methods/gptq.py).

One stage loops over the bit widths, so `dvc exp run -S quant.bits=4` (a scalar) works:
DVC's foreach/matrix would reject a scalar.
"""
from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import atomic_path, dir_size_mb, require_dir
from stages.core.numerics import pin_cpu_numerics
from stages.datasets.lambada import read_jsonl
from stages.meters import energy as E
from stages.methods.gptq import quantize, tokenized_calibration
from stages.schema import metrics as M, params as P

PARAMS = ("seed", "quant") + E.PARAMS


def read_calibration(path: Path, calib_size: int, seed: int) -> list[str]:
    """calib_size passages drawn (seeded) from calib.jsonl; every line is checked first."""
    recs = read_jsonl(path, "calibration file")
    if calib_size > len(recs):
        raise PipelineError(f"quant.calib_size={calib_size} exceeds the {len(recs)} calibration "
                            f"passages in {path}")
    return [recs[i]["text"] for i in sorted(random.Random(seed).sample(range(len(recs)), calib_size))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--base", "--calib", "--out", "--metrics"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    cfg, seed = p["quant"], p["seed"]
    require_dir(args.base, "base model folder (run lm_export)")
    texts = read_calibration(args.calib, cfg["calib_size"], seed)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pin_cpu_numerics(cfg["threads"])  # GPTQ's bits depend on kernel paths and thread count
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(cfg["threads"])

    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise PipelineError("quant.device=cuda but no CUDA device is available")
    meter = E.open_meter(p["energy"], cfg["device"])
    tok = AutoTokenizer.from_pretrained(args.base)
    calib = tokenized_calibration(tok, texts, cfg["calib_seq_len"])
    rows = {}
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        for bits in cfg["bits"]:
            with timed(f"GPTQ int{bits} on {cfg['device']} ({len(calib)} passages)"):
                seconds, energy = meter.once(
                    lambda: quantize(args.base, tok, calib, bits, cfg, seed, tmp / f"int{bits}"), 1, "run")
            rows[f"int{bits}"] = M.LmQuantize(bits=bits, group_size=cfg["group_size"],
                                              quant_time_s=round(seconds, 2),
                                              size_mb=round(dir_size_mb(tmp / f"int{bits}"), 2),
                                              compress_energy=energy)
    M.write(args.metrics, M.LmQuantizeFile(rows))


if __name__ == "__main__":
    run_main(main)
