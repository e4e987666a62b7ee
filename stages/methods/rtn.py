"""Round-to-nearest (RTN) weight quantization through GPTQModel's weight-only path: the same
bits, group size, symmetric grid and GPTQ packing as stages/methods/gptq.py, with no
calibration, so the two differ only in GPTQ's error-compensating updates.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

def quantize(base: Path, bits: int, cfg: dict, dest: Path) -> float:
    """RTN-quantize at `bits`, save to dest (a GPTQ-format folder), return the seconds taken."""
    # GPTQModel sizes its CPU thread pool from the core count: 1 worker on 2 cores, and its
    # model loader then asks for 2 and fails. An explicit count (the env var it reads) fixes it.
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, cfg["threads"])))
    import torch
    from gptqmodel import GPTQModel, QuantizeConfig

    qcfg = QuantizeConfig(bits=bits, group_size=cfg["group_size"], sym=True, desc_act=False,
                          weight_only="rtn")  # sym=True: transformers.GPTQConfig's default, as GPTQ
    dtype = torch.float16 if cfg["device"] == "cuda" else torch.float32
    base, dest = Path(base).resolve(), Path(dest).resolve()
    # GPTQModel writes a timing log under ./logs: run it in a scratch directory, not the repo
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        t0 = time.perf_counter()
        model = GPTQModel.load(str(base), quantize_config=qcfg, device=cfg["device"], dtype=dtype)
        model.quantize()
        seconds = time.perf_counter() - t0
        model.save(str(dest))
        del model
    scrub(dest)
    return seconds


def scrub(dest: Path) -> None:
    """Keep the folder a function of the weights: GPTQModel writes a timing log and, in the
    config's quantization meta, its temporary offload path."""
    (dest / "quant_log.csv").unlink(missing_ok=True)
    for name in ("config.json", "quantize_config.json"):
        path = dest / name
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        q = doc.get("quantization_config", doc)
        q.get("meta", {}).pop("offload_to_disk_path", None)
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
