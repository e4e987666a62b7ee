"""The GPTQ kernel sweep (lm_bench, bench_lm.sweep) as summary entries and a Markdown table."""
from __future__ import annotations


def sweep_summary(llm: dict[str, dict]) -> dict[str, dict]:
    """{width: {kernel: {decode_tokens_per_s, prefill_tokens_per_s} | {unsupported}}}."""
    return {v: r["kernel_sweep"] for v, r in llm.items() if r.get("kernel_sweep")}


def sweep_table(sweep: dict[str, dict]) -> list[str]:
    """One row per (width, kernel that runs it): tok/s and the ratio to the width's fastest."""
    if not sweep:
        return []
    out = ["| width | GPTQ kernel | decode tok/s | prefill tok/s | decode ÷ fastest |",
           "|---|---|---|---|---|"]
    for width, kernels in sweep.items():
        ran = {k: s for k, s in kernels.items() if "unsupported" not in s}
        best = max((s["decode_tokens_per_s"] for s in ran.values()), default=None)
        for k, s in sorted(ran.items(), key=lambda kv: -kv[1]["decode_tokens_per_s"]):
            d = s["decode_tokens_per_s"]
            out.append(f"| `{width}` | `{k}` | {d:.1f} | {s['prefill_tokens_per_s']:.1f} | "
                       f"{d / best:.2f} |")
    return out
