"""The language-model results as text: the report's table per model, summary.json's rows, the
README's table and the CSV, all from the rows of stages/reporting/lm.py."""
from __future__ import annotations

from stages.meters.bandwidth import shown
from stages.reporting.lm import verdict


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def kl(v: float) -> str:
    """A KL divergence in nats: 3 significant digits, or `<1e-6` (the reference's float32 rows)."""
    return "<1e-6" if v < 1e-6 else f"{v:.3g}"


def table(rows: dict[str, dict], model: str) -> list[str]:
    """One Markdown table of a model's variants, best accuracy first."""
    mine = sorted((r for r in rows.values() if r["model"] == model), key=lambda r: -r["acc"])
    out = ["| variant | bits | size MB | acc % [95% CI] | Δacc vs reference, paired (pt) | top-1 agree % | "
           "KL nats | ppl | decode tok/s | speed-up | TTFT ms | TPOT p90 ms | of bound | peak RSS MB | J/token | verdict |",
           "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in mine:
        lo, hi = r["acc_ci95"]
        dlo, dhi = r["delta_acc_ci95"]
        out.append(f"| {r['variant']} | {r['bits']} | {r['size_mb']:.0f} | {pct(r['acc'])} [{pct(lo)}, {pct(hi)}] | "
                   f"{100 * r['delta_acc']:+.1f} [{100 * dlo:+.1f}, {100 * dhi:+.1f}] | {pct(r['agreement'])} | "
                   f"{kl(r['kl_mean'])} | {r['ppl']:.1f} | "
                   f"{r['decode_tokens_per_s']:.1f} | {r['speedup']:.2f}× | {r['ttft_ms']:.0f} | "
                   f"{r['tpot_p90_ms']:.1f} | {shown(r['bandwidth_fraction'])} | {r['peak_rss_mb']:.0f} | "
                   f"{r['energy_j_per_token']:.3g} | "
                   f"{verdict(r)} |")
    return out


def summary(rows: dict[str, dict]) -> dict:
    keep = ("model", "variant", "weights", "runtime", "bits", "num_examples", "acc", "acc_ci95", "delta_acc", "delta_acc_ci95",
            "agreement", "kl_mean", "ppl",
            "decode_tokens_per_s", "speedup", "ttft_ms", "tpot_ms", "size_mb", "peak_rss_mb",
            "energy_j_per_token", "energy_method")
    return {k: {**{f: r[f] for f in keep}, "verdict": verdict(r), "cpu": r["cpu"],
                **{f: r[f] for f in ("gate", "confident_n") if f in r}} for k, r in rows.items()}


def readme_table(summary: dict, model: str) -> list[str]:
    """The README's table of one model, from summary.json (best accuracy first)."""
    mine = sorted((r for r in summary.values() if r["model"] == model), key=lambda r: -r["acc"])
    out = ["| variant | bits | size MB | acc % [95% CI] | Δacc paired (pt) [95% CI] | agree % | KL | "
           "decode tok/s | speed-up | verdict |", "|---|---:|---:|---|---|---:|---:|---:|---:|---|"]
    for r in mine:
        (lo, hi), (dlo, dhi) = r["acc_ci95"], r["delta_acc_ci95"]
        out.append(f"| {r['variant']} | {r['bits']} | {r['size_mb']:.0f} | {pct(r['acc'])} [{pct(lo)}, {pct(hi)}] | "
                   f"{100 * r['delta_acc']:+.1f} [{100 * dlo:+.1f}, {100 * dhi:+.1f}] | {pct(r['agreement'])} | "
                   f"{kl(r['kl_mean'])} | "
                   f"{r['decode_tokens_per_s']:.1f} | {r['speedup']:.2f}× | {r['verdict']} |")
    return out


CSV_FIELDS = ("variant", "model", "runtime", "chain", "bits", "acc", "delta_acc", "agreement", "kl_mean", "ppl",
              "decode_tokens_per_s", "ttft_ms", "size_mb", "peak_rss_mb", "energy_j_per_token",
              "energy_method")


def csv_text(rows: dict[str, dict]) -> str:
    lines = [",".join(CSV_FIELDS)]
    for key in sorted(rows, key=lambda k: (rows[k]["model"], -rows[k]["acc"])):
        r = rows[key]
        lines.append(",".join(f"{r['model']} · {r['variant']}" if f == "variant" else str(r[f]) for f in CSV_FIELDS))
    return "\n".join(lines) + "\n"
