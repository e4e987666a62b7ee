"""The deployment gate of every language-model variant, MLPerf's accuracy rule: a variant passes
when its accuracy on its model's evaluated examples is at least `pass_fraction` (0.99) of its
reference's (the base on PyTorch fp32, the same examples); it is a *confident* pass when the lower
bound of the paired 95% interval clears that line too. Where the point estimate passes and the
interval does not, the examples a confident pass would need are estimated from the per-example
differences (normal approximation of the paired mean: n = (1.96 s / margin)^2).

The matrix puts one model's weights (rows) against its runtimes (columns), each cell with the
gate and, beside a pass, speed, size and energy."""
from __future__ import annotations

import math

from stages.reporting.lm import differences

Z95 = 1.96


def gate(row: dict, ref: dict, fraction: float) -> dict:
    """{"gate": "confident pass" | "pass" | "fail", "line": the accuracy to reach,
    "confident_n": examples a confident pass would need (pass only), else None}."""
    line = fraction * ref["acc"]
    if row["acc"] < line:
        return {"gate": "fail", "line": line, "confident_n": None}
    if ref["acc"] + row["delta_acc_ci95"][0] >= line:
        return {"gate": "confident pass", "line": line, "confident_n": None}
    diff = differences(row, ref)
    mean = sum(diff) / len(diff)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diff) / (len(diff) - 1))
    margin = row["acc"] - line
    need = math.ceil((Z95 * sd / margin) ** 2) if margin > 0 else None
    return {"gate": "pass", "line": line, "confident_n": need}


def apply(rows: dict[str, dict], fraction: float) -> None:
    """Each row's gate against its model's reference variant (rows from reporting.lm.load)."""
    by_label = {(r["model"], r["variant"]): r for r in rows.values()}
    for r in rows.values():
        ref = by_label[(r["model"], r["reference"])]
        r.update({"gate": "reference", "line": fraction * ref["acc"], "confident_n": None} if r is ref
                 else gate(r, ref, fraction))


def cell(r: dict) -> str:
    """A fail with its paired accuracy change; a pass (or the reference) with its costs."""
    if r["gate"] == "fail":
        return f"fail ({100 * r['delta_acc']:+.1f} pt, {100 * r['agreement']:.0f}% agree)"
    fidelity = "" if r["gate"] == "reference" else f" · {100 * r['agreement']:.0f}% agree"
    return (f"**{r['gate']}**{fidelity} · {r['decode_tokens_per_s']:.0f} tok/s · {r['size_mb']:.0f} MB · "
            f"{r['energy_j_per_token']:.2g} J/tok")


def matrix(rows: dict[str, dict], model: str) -> list[str]:
    """One Markdown pass/fail matrix: a row per weights, a column per runtime."""
    mine = [r for r in rows.values() if r["model"] == model]
    cells = {(r["weights"], r["runtime"]): r for r in mine}
    runtimes = sorted({rt for _, rt in cells}, key=lambda rt: (rt != "pytorch", rt))
    best = {w: max(r["acc"] for (ww, _), r in cells.items() if ww == w) for w, _ in cells}
    order = sorted(best, key=lambda w: (-best[w], w))
    out = ["| weights | " + " | ".join(runtimes) + " |", "|---|" + "---|" * len(runtimes)]
    for w in order:
        out.append(f"| {w} | " + " | ".join(cell(cells[(w, rt)]) if (w, rt) in cells else "–"
                                              for rt in runtimes) + " |")
    return out


def legend(rows: dict[str, dict], fraction: float) -> list[str]:
    """What the matrix means, with the n a confident pass needs where a pass is not confident."""
    n = sorted({r["num_examples"] for r in rows.values()})
    out = [f"Gate (MLPerf's rule): **pass** when a variant's accuracy is at least {100 * fraction:g}% "
           f"of its model's reference (the base on PyTorch fp32) on the same {', '.join(map(str, n))} "
           "examples; **confident pass** when the lower end of the paired 95% interval clears that "
           "line too. Fidelity: the share of examples whose top-1 word is the reference's (the KL "
           "divergence is in the tables). Beside each pass: decode tokens/s at batch 1, size on disk, "
           "energy per token."]
    unsure = sorted((r["confident_n"], r["model"], r["variant"]) for r in rows.values()
                    if r["gate"] == "pass" and r["confident_n"])
    if unsure:
        out += ["", "Passes that are not yet confident, and about how many examples their paired "
                "difference would need to become one: " + "; ".join(
                    f"{m} {v}: {n:,}" for n, m, v in unsure) + "."]
    return out
