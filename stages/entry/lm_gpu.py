"""The GPU results set: LM decode/prefill speed, NVML energy per token and the HBM bound on
a CUDA machine (a benchmark, not a test; README "GPU results"). CUDA only: on a machine
without a GPU it stops with a one-line error before any work.

Rows: every speed-only shape (published config, random weights: stages/models/llama_shapes.py)
at every gpu_lm.bits, each GPTQ width once per CUDA kernel that runs it; and, with --models,
the pipeline's own SmolLM2 folders (base in fp16, GPTQ widths per kernel). The copy bandwidth
is measured first, in the same process, and every row carries its fraction of the bound.
"""
from __future__ import annotations

import argparse
import gc
import tempfile
from pathlib import Path

from stages.core.errors import PipelineError, log, run_main, timed
from stages.meters import bandwidth, energy as E, gpu as G
from stages.meters.cuda_graph import graph_decode
from stages.meters.machine import record
from stages.models import llama_shapes as L
from stages.runtimes import torch_lm as R
from stages.schema import metrics as M, metrics_gpu as MG, params as P
from stages.schema.kernels import KERNELS

PARAMS = ("gpu_lm",) + E.PARAMS


def load(folder: Path, kernel: str | None, device: str = "cuda"):
    """fp16 on `device`; a GPTQ folder with `kernel`, which its layers must then really run."""
    import torch
    from transformers import AutoModelForCausalLM, GPTQConfig

    if kernel is None:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float16, device_map=device).eval()
    qc = GPTQConfig(bits=R.bits_of(folder), backend=kernel)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float16, device_map=device,
                                                 quantization_config=qc).eval()
    if set(R.kernels(model)) - {"Linear"} != {KERNELS[kernel].layer}:
        raise PipelineError(f"{folder}: asked for {kernel} but the layers run {R.kernels(model)}")
    return model


def random_fp16(cfg):
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("cuda"):
        return LlamaForCausalLM._from_config(cfg, dtype=torch.float16).eval()


def bytes_per_token(model) -> int:
    """Every weight a decode step reads: all weights in memory but an untied input embedding
    (a row lookup per token)."""
    total = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    emb = model.get_input_embeddings().weight
    return int(total - (0 if model.get_output_embeddings().weight is emb else emb.numel() * emb.element_size()))


def measure(model, meta: dict, cfg: dict, meter, bw: float, failed: dict, name: str) -> MG.LmGpu:
    import torch

    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        s = G.speeds(model, cfg, meter, model.config.vocab_size)
        prof = G.kernel_time_fraction(model, model.config.vocab_size, cfg["profile_tokens"]) \
            if cfg["profile_tokens"] else None
        decode = [MG.Decode(**v) for k, v in s.items() if k.startswith("decode_b")]
        for on, timer, tag in ((cfg["static_cache"], G.static_decode, "static"),
                               (cfg["cuda_graph"], graph_decode, "graph")):
            if not on:
                continue
            try:
                decode.append(MG.Decode(**timer(model, cfg, meter, model.config.vocab_size)))
            except Exception as exc:  # recorded beside the row, which keeps its dynamic figures
                failed[f"{name}-{tag}"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
    per_token = bytes_per_token(model)
    first = max((d for d in decode if d.batch == 1), key=lambda d: d.tokens_per_s)
    return MG.LmGpu(device="cuda", gpu=torch.cuda.get_device_name(0), runtime="torch",
                    kernels=R.kernels(model), decode_tokens_per_s=first.tokens_per_s,
                    decode_cache=first.cache,
                    prefill_tokens_per_s=s["prefill_tokens_per_s"], decode=decode,
                    energy_j_per_token_decode=first.energy.j_per_unit,
                    energy_j_per_token_prefill=s["energy_prefill"]["j_per_unit"],
                    energy_method=meter.method, weight_bytes_per_token=per_token,
                    bandwidth_fraction=bandwidth.fraction(first.tokens_per_s, bw, per_token),
                    size_mb=R.param_mb(model), gpu_memory_mb=G.memory_mb(), profile=prof, **meta)


def variants(cfg: dict, models: list[Path], work: Path):
    """(name, meta, loader) for every row, in order; loaders build or load lazily."""
    for shape in cfg["shapes"]:
        c = L.config(shape)
        for bits in cfg["bits"]:
            meta = dict(model=shape, method="none" if bits == 16 else "gptq-random", bits=bits,
                        speed_only=True, acc=None)
            if bits == 16:
                yield f"{shape}-fp16", meta, lambda c=c: random_fp16(c)
                continue
            folder = work / f"{shape}-int{bits}"
            for k in (k for k in cfg["kernels"] if bits in KERNELS[k].bits):
                yield f"{shape}-int{bits}-{k}", meta, lambda c=c, b=bits, f=folder, k=k: load(
                    f if f.exists() else L.write_gptq(c, b, cfg["group_size"], f, "cuda"), k)
    for root in models:
        for name, folder in R.discover(root).items():
            bits = R.bits_of(folder)
            meta = dict(model="smollm2-135m", method="none" if bits == 32 else "gptq",
                        bits=16 if bits == 32 else bits, speed_only=False, acc=None)
            kernels = [None] if bits == 32 else [k for k in cfg["kernels"] if bits in KERNELS[k].bits]
            for k in kernels:
                yield f"smollm2-{'fp16' if k is None else name + '-' + k}", meta, \
                    lambda f=folder, k=k: load(f, k)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path, help="a folder: one <row>.json per row (metrics/gpu/speed)")
    ap.add_argument("--models", type=Path, action="append", default=[],
                    help="a pipeline model folder (base, or the GPTQ folder of int<bits>/)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = P.load(args.params, PARAMS)
    cfg = p["gpu_lm"]
    for shape in cfg["shapes"]:   # a typo'd shape fails here, before the CUDA check
        L.check(shape)
    R.setup("cuda", 1, "lm_gpu (CUDA only)")
    import torch

    meter = E.open_meter(p["energy"], "cuda")
    bw = G.copy_gb_s()
    log.info("device-to-device copy: %.0f GB/s", bw)
    rows, failed = {}, {}
    machine = record(gpu=True) | {"cuda": torch.version.cuda, "driver": G.driver()}
    with tempfile.TemporaryDirectory() as work:
        for name, meta, build in variants(cfg, args.models, Path(work)):
            model = None
            with timed(f"timing {name}"):
                try:
                    model = build()
                    rows[name] = measure(model, meta, cfg, meter, bw, failed, name)
                except Exception as exc:  # a kernel that cannot run here: recorded, never silent
                    failed[name] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
                    log.error("%s failed: %s", name, failed[name])
            del model
            gc.collect()
            torch.cuda.empty_cache()
            # one file per row, written (atomically) as soon as it is timed: a run cut short
            # keeps the rows it timed, and no file overrides another's rows
            M.write(args.out / f"{name}.json", MG.LmGpuFile(
                machine=machine, copy_gb_s=bw, params=cfg,
                variants={name: rows[name]} if name in rows else {},
                failed={k: v for k, v in failed.items() if MG.of_row(k, name)},
                energy_min_window_s=getattr(meter.source, "min_window_s", 0.0)))


if __name__ == "__main__":
    run_main(main)
