"""metrics/summary.json and the plot tables (pure functions of the aggregated rows)."""
from __future__ import annotations

from stages.reporting.specs import DETECTOR_METRICS


def _ranked(metrics):
    return [m for m in metrics if m.higher_is_better is not None]


def _part(rows: dict[str, dict], metrics, labels: tuple[str, ...]) -> dict:
    out = {}
    for variant, row in rows.items():
        entry = {key: row[key] for key in labels}
        for m in _ranked(metrics):
            entry[m.key] = row[m.key]
            if m.ci:
                entry[f"{m.key}_ci95"] = row.get(f"{m.key}_ci95")
            if m.spread:
                entry[f"{m.key}_p10_p90"] = row.get(f"{m.key}_p10_p90")
                entry[f"{m.key}_net"] = row.get(f"{m.key}_net")
        out[variant] = entry
    return out


def summarize(det: dict[str, dict]) -> dict:
    """Stable keys detector.<variant>.<metric> (plus `<metric>_ci95: [low, high]`; energy:
    `<metric>_p10_p90: [p10, p90]` over windows and `<metric>_net` of idle), and each metric's
    direction under higher_is_better (as lm-evaluation-harness results do)."""
    return {"detector": _part(det, DETECTOR_METRICS, ("runtime", "precision", "energy_method")),
            "higher_is_better": {
                "detector": {m.key: m.higher_is_better for m in _ranked(DETECTOR_METRICS)}}}


def csv_text(rows: dict[str, dict], metrics) -> str:
    """One row per variant in fixed order; raw values (0..1 accuracies), empty when null;
    `<metric>_ci_low`/`_ci_high` columns after each metric with an interval, `_p10`/`_p90`
    after each energy figure."""
    def cell(v):
        return "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    head, cols = ["variant"], []
    for m in metrics:
        head.append(m.key)
        cols.append(lambda r, k=m.key: r.get(k))
        if m.ci:
            head += [f"{m.key}_ci_low", f"{m.key}_ci_high"]
            cols += [lambda r, k=m.key, i=i: (r.get(f"{k}_ci95") or [None, None])[i] for i in (0, 1)]
        if m.spread:
            head += [f"{m.key}_p10", f"{m.key}_p90"]
            cols += [lambda r, k=m.key, i=i: (r.get(f"{k}_p10_p90") or [None, None])[i] for i in (0, 1)]
    lines = [",".join(head)]
    lines += [",".join([v] + [cell(c(r)) for c in cols]) for v, r in rows.items()]
    return "\n".join(lines) + "\n"


def machine_lines(machine: dict) -> dict[str, str]:
    """The benchmark stages' machine record as report lines."""
    libs = ", ".join(f"{k} {v}" for k, v in machine.get("libraries", {}).items())
    out = {"CPU": machine.get("cpu", "unknown"),
           "cores": f"{machine.get('usable_cores')} usable of {machine.get('logical_cores')}",
           "OS": machine.get("os", "unknown"), "Python": machine.get("python", "unknown"),
           "libraries": libs}
    if machine.get("gpu"):
        out["GPU"] = machine["gpu"]
    return out
