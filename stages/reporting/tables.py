"""Markdown tables of the aggregated metrics, with 95% intervals (pure functions)."""
from __future__ import annotations

from typing import Any

from stages.reporting.specs import Metric


def label(m: Metric, k: Any = "k") -> str:
    return m.label.replace("{k}", str(k))


def fmt_value(m: Metric, value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if m.scale != 1.0 and value < 0:  # pycocotools' -1: no object of that size in the set
        return "n/a"
    return format(value * m.scale if m.scale != 1.0 else value, m.fmt)


def cell(m: Metric, row: dict) -> str:
    """The value, and its 95% interval in brackets when the metric carries one (energy: its
    p10–p90 over windows in parentheses)."""
    text, ci = fmt_value(m, row.get(m.key)), row.get(f"{m.key}_ci95") if m.ci else None
    spread = row.get(f"{m.key}_p10_p90") if m.spread else None
    if spread:
        return f"{text} ({fmt_value(m, spread[0])}–{fmt_value(m, spread[1])})"
    return f"{text} [{fmt_value(m, ci[0])}, {fmt_value(m, ci[1])}]" if ci else text


def overlaps(rows: dict[str, dict], metrics) -> list[str]:
    """One line per metric naming the variant pairs whose 95% intervals overlap: their
    difference is not resolved by this sample."""
    out = []
    for m in (m for m in metrics if m.ci):
        names = [v for v, r in rows.items() if r.get(f"{m.key}_ci95")]
        pairs = [f"`{a}`–`{b}`" for i, a in enumerate(names) for b in names[i + 1:]
                 if rows[a][f"{m.key}_ci95"][0] <= rows[b][f"{m.key}_ci95"][1]
                 and rows[b][f"{m.key}_ci95"][0] <= rows[a][f"{m.key}_ci95"][1]]
        if pairs:
            out.append(f"{label(m)}: " + ", ".join(pairs))
    return out


def table(rows: dict[str, dict], metrics, k: Any = "k", extra: dict | None = None) -> str:
    """One row per variant (in the dict's order), one column per metric; `extra`: a reference
    row {name: {key: value}} appended in italics."""
    head = ["variant"] + [label(m, k) for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, row in rows.items():
        cells = [f"`{variant}`"] + [cell(m, row) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    for name, row in (extra or {}).items():
        cells = [f"*{name}*"] + [fmt_value(m, row[m.key]) if m.key in row else "" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(rows: dict[str, dict], metrics, k: Any = "k", extra: dict | None = None) -> list[str]:
    """Accuracy, then speed and size, then energy and carbon (titled with the energy method),
    then the run's counts and settings."""
    methods = ", ".join(f"`{x}`" for x in dict.fromkeys(r.get("energy_method") for r in rows.values()))
    groups = [("Accuracy", [m for m in metrics if m.group == "accuracy"], extra),
              ("Speed and size", [m for m in metrics if m.higher_is_better is not None
                                  and m.group == "cost"], None),
              (f"Energy and carbon (method: {methods}; parentheses: p10–p90 over windows)",
               [m for m in metrics if m.group == "energy"], None),
              ("Counts and settings", [m for m in metrics if m.higher_is_better is None], None)]
    out = []
    for title, group, ref in groups:
        out += [f"### {title}", "", table(rows, group, k, ref), ""]
    return out


def latency_ratios(rows: dict[str, dict], key: str = "latency_ms_median") -> dict[str, float]:
    """int8 / float32 median latency (`key`: the invoke, or the network alone) per runtime
    (runtimes with both rows)."""
    lat = {(r.get("runtime"), r.get("precision")): r.get(key) for r in rows.values()}
    return {rt: lat[rt, "int8"] / lat[rt, "float32"] for rt, p in lat
            if p == "float32" and lat.get((rt, "int8")) and lat[rt, p]}


def ratio_lines(rows: dict[str, dict]) -> list[str]:
    """The int8 / float32 latency ratio of each runtime (the invoke, and the network alone,
    which is what int8 changes) and the fastest int8 row."""
    network = latency_ratios(rows, "network_ms_median")
    out = [f"- `{rt}`: int8 ÷ float32 invoke latency = **{r:.2f}**"
           + (f" (the network alone: {network[rt]:.2f})" if rt in network else "")
           for rt, r in latency_ratios(rows).items()]
    int8 = {v: r["latency_ms_median"] for v, r in rows.items() if r.get("precision") == "int8"}
    if int8:
        best = min(int8, key=int8.get)
        others = [f"`{v}` {t / int8[best]:.2f}×" for v, t in int8.items() if v != best]
        out.append(f"- fastest int8 row: `{best}`, {int8[best]:.2f} ms median"
                   + (f" (others: {', '.join(others)} its latency)" if others else ""))
    return out
