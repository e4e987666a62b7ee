"""Every GPTQ kernel that can run a width, timed on this machine: the evidence behind the
default eval_lm.backend. A shorter protocol than the main speed rows (bench_lm.sweep), so it
ranks kernels; the main rows stay the figures to quote."""
from __future__ import annotations

from stages.core.errors import log
from stages.meters.lm_speed import speeds
from stages.runtimes import torch_lm as R
from stages.schema.kernels import KERNELS


def sweep(folder, bits: int, texts: list[str], cfg: dict, meter) -> dict[str, dict]:
    """{kernel: {decode_tokens_per_s, prefill_tokens_per_s} or {"unsupported": reason}}."""
    import torch

    s, out = cfg["sweep"], {}
    protocol = {"decode_tokens": s["decode_tokens"], "prefill_tokens": s["prefill_tokens"],
                "speed_repeats": s["repeats"]}
    for name in s["kernels"]:
        k = KERNELS[name]
        if bits not in k.bits or cfg["device"] not in k.devices:
            out[name] = {"unsupported": f"runs {sorted(k.bits)} bits on {sorted(k.devices)}"}
            continue
        model, tok = R.load(folder, cfg["device"], name)
        with torch.inference_mode():
            out[name], _ = speeds(model, tok, texts, protocol, meter)  # speed only
        log.info("int%d %s: %.1f decode, %.1f prefill tok/s", bits, name,
                 out[name]["decode_tokens_per_s"], out[name]["prefill_tokens_per_s"])
        del model
    return out
