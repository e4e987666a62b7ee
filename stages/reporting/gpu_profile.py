"""Where a graph-replayed batch-1 decode step's time goes (the `profile` of lm_gpu's graph
decode: torch.profiler over gpu_lm.profile_tokens replays): per token, the wall time, the
summed kernel time, the launches, the heaviest kernel's time, and the time the bound allows
(weight bytes per token at the measured copy bandwidth)."""
from __future__ import annotations


def profile_table(rows: dict) -> list[str]:
    out = ["| variant | tok/s (graph) | wall ms/token | kernel ms/token | kernels/token | heaviest kernel "
           "| its ms/token | bound ms/token |", "|---" * 8 + "|"]
    for name, r in rows.items():
        graph = next((d for d in r["decode"] if d["cache"] == "graph" and d.get("profile")), None)
        if graph is None:
            continue
        p = graph["profile"]
        top, secs = max(p["top_kernels"].items(), key=lambda kv: kv[1])
        out.append(f"| `{name}` | {graph['tokens_per_s']:.1f} | {1e3 * p['wall_s_per_token']:.2f} | "
                   f"{1e3 * p['kernel_s_per_token']:.2f} | {p['kernels_per_token']:.0f} | "
                   f"`{top[:36].replace('|', '/')}` | {1e3 * secs / r['profile_tokens']:.2f} | "
                   f"{1e3 * r['weight_bytes_per_token'] / (r['copy_gb_s'] * 1e9):.2f} |")
    return out if len(out) > 2 else []
