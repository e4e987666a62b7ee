"""Round-to-nearest quantize the base model at every quant.bits (stages/methods/rtn.py): the
no-calibration baseline that shows what GPTQ's calibration buys, at the same widths, group
size and packing, so lm_eval and lm_bench run it with the same kernels.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import atomic_path, dir_size_mb, require_dir
from stages.core.numerics import pin_cpu_numerics
from stages.meters import energy as E
from stages.methods.rtn import quantize
from stages.schema import metrics as M, params as P

PARAMS = ("quant.bits", "quant.group_size", "quant.device", "quant.threads") + E.PARAMS


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--base", "--out", "--metrics"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    cfg = p["quant"]
    require_dir(args.base, "base model folder (run lm_export)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pin_cpu_numerics(cfg["threads"])
    import torch

    torch.set_num_threads(cfg["threads"])
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise PipelineError("quant.device=cuda but no CUDA device is available")
    meter = E.open_meter(p["energy"], cfg["device"])
    rows = {}
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        for bits in cfg["bits"]:
            with timed(f"RTN int{bits} on {cfg['device']}"):
                seconds, energy = meter.once(
                    lambda: quantize(args.base, bits, cfg, tmp / f"int{bits}"), 1, "run")
            rows[f"int{bits}"] = M.LmQuantize(bits=bits, group_size=cfg["group_size"],
                                              quant_time_s=round(seconds, 2),
                                              size_mb=round(dir_size_mb(tmp / f"int{bits}"), 2),
                                              compress_energy=energy)
    M.write(args.metrics, M.LmQuantizeFile(rows))


if __name__ == "__main__":
    run_main(main)
