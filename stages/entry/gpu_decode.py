"""One row of gpu_decode: batch-1 greedy decode of a speed-only model shape (published config,
random weights) on a CUDA GPU, against the HBM bound measured in the same process. A benchmark,
not a test. CUDA only: without a GPU it stops with one line before any work.

The engine is stages/runtimes/fused_llama.py (fused_opt.py for OPT shapes): fused projections, a static KV cache, the step
compiled by torch.compile and captured as one CUDA graph that also advances the token and its
position; bfloat16 linears, or int4 through torch's tinygemm kernel, GemLite's or our Triton
kernel, or dequantized inside the compiled step (`kernel: inductor`).

The bound: bytes a step reads over the larger of a device-to-device copy (read + write bytes)
and a 4 GB reduction (read bytes), so a row never looks closer to it than it is.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from stages.core.errors import PipelineError, log, run_main
from stages.meters import energy as E, gpu as G
from stages.meters.machine import record
from stages.models import llama_shapes as L, opt_shapes as O
from stages.runtimes import fused_llama, fused_opt, int4_linear
from stages.schema import metrics as M, metrics_gpu as MG
from stages.schema.common import Energy
from stages.schema.gpu_decode import GpuDecode
from stages.schema.host import HostName
from stages.schema.load import load_sections, read

PARAMS = ("host", "gpu_decode.rows.${key}", "gpu_decode.group_size", "gpu_decode.compile_mode",
          "gpu_decode.prompt_tokens", "gpu_decode.decode_tokens", "gpu_decode.speed_repeats",
          "gpu_decode.profile_tokens") + E.PARAMS


def same_gpu(folder: Path, gpu: str) -> None:
    """A host name is one GPU model: refuse to file this row beside another GPU's rows."""
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        other = json.loads(path.read_text()).get("gpu")
        if other and other != gpu:
            raise PipelineError(f"{folder} holds rows timed on {other} ({path.name}); this is {gpu}: "
                                "give this machine its own host name (-S host=<name>)")


def engine(shape: str):
    """(transformers config, its model class's name, the engine's check, the engine) of a
    speed-only shape: OPT shapes run fused_opt.py, the others fused_llama.py."""
    if shape in O.SHAPES:
        return O.config(shape), "OPTForCausalLM", fused_opt.check, fused_opt.FusedOpt
    return L.config(shape), "LlamaForCausalLM", fused_llama.check, fused_llama.FusedLlama


def fused_decoder(fused, model, row: dict, cfg: dict, max_len: int):
    """(start, window, bytes per token) of the fused engine. start() prefills the prompt (eager)
    and returns its next token; window(first, steps) decodes `steps` tokens from there, each one
    replay of a CUDA graph that holds the compiled step and advances its own token and position,
    so no host work sits between steps (as vLLM and gpt-fast replay theirs). The captured step is
    checked against the eager step before any timing."""
    import torch
    import torch._inductor.config

    dec = fused(model, max_len, weights=row["weights"], head=row["head"],
                group_size=cfg["group_size"], kernel=row["kernel"])
    checked = [v for L in dec.layers for v in L.values() if hasattr(v, "error")] + \
        ([dec.head] if hasattr(dec.head, "error") else [])
    if checked:   # the kernels checked against the dequantized product when built (GemLite)
        log.info("int4 kernel error (RMS, relative): at most %.3g; int4's own: %.3g to %.3g",
                 max(v.error for v in checked), min(v.int4_error for v in checked),
                 max(v.int4_error for v in checked))
    torch._inductor.config.coordinate_descent_tuning = True   # as gpt-fast compiles its step
    compiled = torch.compile(dec.next_token, mode=cfg["compile_mode"], fullgraph=True)
    p = cfg["prompt_tokens"]
    prompt = torch.randint(0, model.config.vocab_size, (1, p), device="cuda")
    loop = fused_llama.GreedyLoop(compiled, p, "cuda")

    def start():
        dec.reset()
        return dec.next_token(prompt, torch.arange(p, device="cuda"))[1]

    first = start()
    eager = dec.next_token(first, loop.pos)[0].float()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):   # compiles; warm-up off the default stream, as torch's docs ask
        for _ in range(3):
            loop.rewind(first)
            loop.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = loop.step()

    def window(first, steps: int) -> None:
        loop.rewind(first)
        for _ in range(steps):
            graph.replay()

    window(first, 1)
    torch.cuda.synchronize()
    err, scale = (logits.float() - eager).abs().max().item(), eager.abs().max().item()
    if not err <= 5e-2 * max(scale, 1.0):
        raise PipelineError(f"the captured step differs from the eager step: max |diff| {err:.3g} (scale {scale:.3g})")
    log.info("captured step vs eager: max |diff| %.3g (scale %.3g)", err, scale)
    return start, window, dec.bytes_per_token()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    raw = read(args.params)
    rows = ((raw if isinstance(raw, dict) else {}).get("gpu_decode") or {}).get("rows") or {}
    if args.row not in rows:
        raise PipelineError(f"gpu_decode.rows has no row {args.row!r}; rows: {sorted(rows)}")
    p = load_sections(args.params, tuple(k.replace("${key}", args.row) for k in PARAMS),
                      {"host": HostName, "gpu_decode": GpuDecode, "energy": Energy}, raw)
    cfg = p["gpu_decode"]
    row = cfg["rows"][args.row]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_cfg, model_class, check, fused = engine(row["shape"])
    check(model_cfg, row["weights"], row["head"], cfg["group_size"], row["kernel"])
    import torch

    if not torch.cuda.is_available():
        raise PipelineError("gpu_decode needs a CUDA GPU (this machine has none): its rows are "
                            "empty by default; the gpu profile fills them on a CUDA machine")
    from importlib.metadata import version
    machine = record(gpu=True) | {"cuda": torch.version.cuda, "driver": G.driver(), "torch": torch.__version__,
                                  "triton": version("triton")} | \
        ({"gemlite": version("gemlite")} if int4_linear.gemlite(row["kernel"]) else {})
    same_gpu(args.out.parent, machine["gpu"])
    meter = E.open_meter(p["energy"], "cuda")
    copy, read_bw = G.copy_gb_s(), G.read_gb_s()
    bound = max(copy, read_bw)
    log.info("device-to-device copy %.0f GB/s, read %.0f GB/s", copy, read_bw)
    torch.manual_seed(0)
    with torch.device("cuda"):
        import transformers
        model = getattr(transformers, model_class)._from_config(model_cfg, dtype=torch.bfloat16).eval()
    n, pt = cfg["decode_tokens"], cfg["prompt_tokens"]
    max_len = pt + n + 8
    with torch.inference_mode():
        t0 = time.perf_counter()
        start, window, per_token = fused_decoder(fused, model, row, cfg, max_len)
        compile_s = time.perf_counter() - t0
        del model   # the engine holds what it reads; the bf16 source goes
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

        def decode(steps: int = n):
            """`steps` greedy steps after the prompt (the prefill runs outside every window)."""
            window(first, steps)
        first = start()
        _, times, energy = meter.repeats(decode, cfg["speed_repeats"], n, "token",
                                         torch.cuda.synchronize, warmup=2)
        prof = None
        if cfg["profile_tokens"]:
            first = start()
            prof = MG.Profile(**G.profiled(lambda: decode(cfg["profile_tokens"]), cfg["profile_tokens"]))
    meter.close()
    tps = n / statistics.median(times)
    bound_tps = bound * 1e9 / per_token
    M.write(args.out, MG.DecodeRow(
        machine=machine, gpu=machine["gpu"], model=row["shape"], kernel=row["kernel"],
        weights=row["weights"], head=row["head"], group_size=cfg["group_size"],
        prompt_tokens=pt, decode_tokens=n, tokens_per_s=tps, energy=energy,
        weight_bytes_per_token=per_token, copy_gb_s=copy, read_gb_s=read_bw, bound_gb_s=bound,
        bound_tokens_per_s=bound_tps, bandwidth_fraction=tps / bound_tps, compile_s=compile_s,
        gpu_memory_mb=G.memory_mb(), profile=prof,
        params={k: cfg[k] for k in cfg if k != "rows"} | {"row": args.row} | dict(row)))
    log.info("%s: %.1f tok/s, %.3f of the %.0f tok/s bound", args.row, tps, tps / bound_tps, bound_tps)



if __name__ == "__main__":
    run_main(main)
