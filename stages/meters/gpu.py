"""GPU meters: device-to-device copy bandwidth (the decode bound), decode and prefill speed
at a batch size with NVML energy in the same windows, GPU memory, and a profile of where a
decode step's time goes (GPU kernel time vs the wall clock: the rest is launch and Python).
"""
from __future__ import annotations

import statistics


def _median_s(fn, repeats: int) -> float:
    """Median seconds of `fn` on the GPU (CUDA events), after one untimed call."""
    import torch

    fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def copy_gb_s(mb: int = 4096, repeats: int = 20) -> float:
    """Median GB/s of a device-to-device copy of `mb` MB, counting bytes read plus written
    (as a decode step reads its weights, this is the rate a memory-bound kernel can reach)."""
    import torch

    n = mb * 1_000_000 // 4
    src, dst = torch.ones(n, device="cuda"), torch.empty(n, device="cuda")
    seconds = _median_s(lambda: dst.copy_(src), repeats)
    del src, dst
    return 2 * n * 4 / seconds / 1e9


def read_gb_s(gb: int = 4, repeats: int = 20) -> float:
    """Median GB/s of reading `gb` GB once (a bfloat16 sum)."""
    import torch

    x = torch.ones(gb * 500_000_000, dtype=torch.bfloat16, device="cuda")
    seconds = _median_s(x.sum, repeats)
    del x
    return gb / seconds


def speeds(model, cfg: dict, meter, vocab: int, seed: int = 0) -> dict:
    """Decode tok/s at every batch in cfg["decode_batches"] (greedy, exactly decode_tokens
    new tokens per sequence after a 32-token prompt), prefill tok/s (one forward over
    prefill_tokens, batch 1), each a median of speed_repeats windows after a warm-up, and NVML
    J per token of the same windows. Random prompt ids: speed does not depend on their values."""
    import torch

    g = torch.Generator("cpu").manual_seed(seed)
    n, reps, p = cfg["decode_tokens"], cfg["speed_repeats"], cfg["prefill_tokens"]
    sync = torch.cuda.synchronize
    prefill = torch.randint(0, vocab, (1, p), generator=g).cuda()
    out = {}
    _, t, e = meter.repeats(lambda: model(input_ids=prefill, use_cache=False), reps, p, "token", sync)
    out["prefill_tokens_per_s"], out["energy_prefill"] = p / statistics.median(t), e
    for b in cfg["decode_batches"]:
        prompt = torch.randint(0, vocab, (b, 32), generator=g).cuda()

        def decode():
            ids = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                 max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
            assert ids.shape == (b, 32 + n)

        _, t, e = meter.repeats(decode, reps, b * n, "token", sync)
        out[f"decode_b{b}"] = {"batch": b, "cache": "dynamic", "tokens_per_s": b * n / statistics.median(t),
                               "energy": e}
    return out


def static_decode(model, cfg: dict, meter, vocab: int, seed: int = 0) -> dict:
    """Batch-1 decode with a static KV cache: transformers then compiles the decode step
    (torch.compile, CUDA graphs), which removes the per-kernel launch cost. Two warm-ups
    (the compile happens in the first)."""
    import torch

    g = torch.Generator("cpu").manual_seed(seed)
    n = cfg["decode_tokens"]
    prompt = torch.randint(0, vocab, (1, 32), generator=g).cuda()

    def decode():
        ids = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
                             cache_implementation="static")
        assert ids.shape == (1, 32 + n)

    _, t, e = meter.repeats(decode, cfg["speed_repeats"], n, "token", torch.cuda.synchronize, warmup=2)
    return {"batch": 1, "cache": "static", "tokens_per_s": n / statistics.median(t), "energy": e}


def kernel_time_fraction(model, vocab: int, tokens: int = 16) -> dict:
    """One batch-1 greedy generation under torch.profiler: the summed CUDA kernel time per
    decoded token over the wall time per token. Far below 1 means the GPU waits on launches."""
    import torch

    prompt = torch.randint(0, vocab, (1, 32)).cuda()
    run = lambda: model.generate(prompt, attention_mask=torch.ones_like(prompt),  # noqa: E731
                                 do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens,
                                 pad_token_id=0)
    run()
    return profiled(run, tokens)


def profiled(run, tokens: int) -> dict:
    """`run` (which decodes `tokens` tokens) once under torch.profiler: kernel vs wall time per
    token, kernel launches per token and the five kernels with the most GPU time."""
    import time

    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        run()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.device_time for e in events) / 1e6   # microseconds -> s
    top = sorted(prof.key_averages(), key=lambda a: -a.device_time_total)[:5]
    return {"wall_s_per_token": wall / tokens, "kernel_s_per_token": busy / tokens,
            "kernel_time_fraction": busy / wall, "kernels_per_token": len(events) / tokens,
            "top_kernels": {a.key[:80]: a.device_time_total / 1e6 for a in top}}


def memory_mb() -> float:
    """Peak GPU memory allocated by torch since the last reset, in MB."""
    import torch
    return torch.cuda.max_memory_allocated() / 1e6


def driver() -> str | None:
    """The NVIDIA driver version, from NVML (None where it cannot be read)."""
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml.nvmlSystemGetDriverVersion()
    except Exception:
        return None
