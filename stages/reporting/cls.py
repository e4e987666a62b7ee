"""The classifier study's report (seed 004's table, in kind): per variant, size and speed-up
against fp32 on its own runtime, accuracy and macro-F1 with intervals, the paired accuracy
difference to the reference, and whether the headline goal is met: a chain at least 6 times
smaller and 3 times faster than fp32 on ONNX Runtime or OpenVINO, whose paired lower bound stays
within 1 point of the reference."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from stages.core.errors import PipelineError
from stages.core.files import read_json
from stages.tasks.classify import paired

GOAL = {"smaller": 6.0, "faster": 3.0, "points": 1.0}
GOAL_RUNTIMES = ("onnxruntime", "openvino")


def load(metrics: Path, host: str, variants: list[str]) -> dict[str, dict]:
    """variant -> its eval and bench files merged, for the variants params.yaml lists (a file of
    a variant no longer listed is ignored; a listed one without both files is an error)."""
    rows = {}
    for name in variants:
        ev, bench = metrics / "eval" / f"{name}.json", metrics / "bench" / host / f"{name}.json"
        for f in (ev, bench):
            if not f.is_file():
                raise PipelineError(f"classifier variant {name!r} has no {f} (host {host!r}): run its stages")
        rows[name] = read_json(ev) | {k: v for k, v in read_json(bench).items() if k != "node"}
    if not rows:
        raise PipelineError("classifier.variants is empty: nothing to report")
    return rows


def derive(rows: dict[str, dict], reference: str, samples: int, seed: int) -> dict[str, dict]:
    """Adds the paired delta to the reference, prediction agreement, size and speed ratios."""
    if reference not in rows:
        raise PipelineError(f"classifier.reference {reference!r} has no results")
    ref = rows[reference]
    for name, r in rows.items():
        r.update(paired(r["correct"], ref["correct"], samples, seed))
        r["agreement"] = float(np.mean(np.asarray(r["predictions"]) == np.asarray(ref["predictions"])))
        own = next((o for o in rows.values() if o["node"] == "fp32" and o["precision"] == "fp32"
                    and o["runtime"] == r["runtime"]), ref)
        r["smaller"] = ref["size_mb"] / r["size_mb"]
        r["faster"] = own["latency_ms_median"] / r["latency_ms_median"]
        r["speed_base"] = f"fp32 · {own['runtime']}"
    return rows


def goal(rows: dict[str, dict]) -> tuple[str | None, list[str]]:
    """The best variant meeting the goal (or None) and one line per candidate saying how far."""
    lines, best = [], None
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["smaller"] * kv[1]["faster"]):
        if r["runtime"] not in GOAL_RUNTIMES or r["node"] == "fp32" and r["precision"] == "fp32":
            continue
        lo = r["delta_acc_ci95"][0] * 100
        ok = r["smaller"] >= GOAL["smaller"] and r["faster"] >= GOAL["faster"] and lo >= -GOAL["points"]
        best = best or (name if ok else None)
        lines.append(f"`{name}`: {r['smaller']:.1f}× smaller, {r['faster']:.1f}× faster, paired lower "
                     f"bound {lo:+.1f} pt: " + ("**meets the goal**" if ok else "misses (" + ", ".join(
                         m for m, bad in (("size", r["smaller"] < GOAL["smaller"]), ("speed", r["faster"] < GOAL["faster"]),
                                          ("accuracy", lo < -GOAL["points"])) if bad) + ")"))
    return best, lines


def table(rows: dict[str, dict]) -> list[str]:
    out = ["| variant | node | runtime | precision | size MB | smaller × | batch-1 ms (p90) | faster × (vs) | "
           "examples/s (batch) | acc % [95% CI] | Δacc vs reference, paired (pt) | agree % | macro-F1 [95% CI] | "
           "J/example b1 |", "|---" * 14 + "|"]
    for name, r in sorted(rows.items(), key=lambda kv: kv[1]["size_mb"], reverse=True):
        a, f, d = r["acc_ci95"], r["macro_f1_ci95"], r["delta_acc_ci95"]
        out.append(f"| `{name}` | {r['node']} | {r['runtime']} | {r['precision']} | {r['size_mb']:.1f} | "
                   f"{r['smaller']:.2f} | {r['latency_ms_median']:.2f} ({r['latency_ms_p90']:.2f}) | "
                   f"{r['faster']:.2f} ({r['speed_base']}) | {r['examples_per_s']:.0f} ({r['batch']}) | "
                   f"{100 * r['acc']:.1f} [{100 * a[0]:.1f}, {100 * a[1]:.1f}] | {100 * r['delta_acc']:+.1f} "
                   f"[{100 * d[0]:+.1f}, {100 * d[1]:+.1f}] | {100 * r['agreement']:.1f} | {r['macro_f1']:.3f} "
                   f"[{f[0]:.3f}, {f[1]:.3f}] | {r['energy_batch1']['j_per_unit']:.3g} |")
    return out


def figure(rows: dict[str, dict], n: int, host: str) -> go.Figure:
    """Accuracy (95% CI) vs batch-1 latency: colour = runtime, shape = node, fill = precision
    (fp32 filled, fp16 faded, static int8 open, dynamic int8 open and dotted)."""
    colours = {"pytorch": "#0072b2", "onnxruntime": "#e69f00", "openvino": "#009e73"}
    symbols = dict(zip(sorted({r["node"] for r in rows.values()}), ["circle", "square", "diamond", "triangle-up",
                                                                  "x", "star", "cross"] * 3))
    fill = {"fp32": "", "fp16": "", "int8_static": "-open", "int8_dynamic": "-open-dot"}
    fig = go.Figure()
    for name, r in rows.items():
        fig.add_trace(go.Scatter(
            x=[r["latency_ms_median"]], y=[100 * r["acc"]], name=name, mode="markers",
            marker=dict(color=colours.get(r["runtime"], "#777"), symbol=symbols[r["node"]] + fill[r["precision"]],
                        size=13, line=dict(width=2, color=colours.get(r["runtime"], "#777")),
                        opacity=0.4 if r["precision"] == "fp16" else 1.0),
            error_y=dict(type="data", symmetric=False, array=[100 * (r["acc_ci95"][1] - r["acc"])],
                         arrayminus=[100 * (r["acc"] - r["acc_ci95"][0])])))
    fig.update_layout(title=f"Text classifier: test accuracy (n = {n}, 95% CI) vs batch-1 latency, host {host}<br>"
                            "<sup>colour: runtime · shape: node · filled fp32, faded fp16, open int8 (dotted: dynamic)</sup>",
                      xaxis_title="batch-1 latency, median (ms, log)", yaxis_title="accuracy (%)",
                      xaxis_type="log", template="plotly_white", width=1000, height=600)
    return fig


def csv_rows(rows: dict[str, dict]) -> list[dict]:
    keys = ("node", "runtime", "precision", "size_mb", "smaller", "latency_ms_median", "latency_ms_p90", "faster",
            "examples_per_s", "acc", "delta_acc", "agreement", "macro_f1", "num_examples")
    return [{"variant": name, **{k: r[k] for k in keys}, "acc_ci95": r["acc_ci95"],
             "delta_acc_ci95": r["delta_acc_ci95"], "macro_f1_ci95": r["macro_f1_ci95"],
             "energy_j_per_example": r["energy_batch1"]["j_per_unit"],
             "energy_method": r["energy_batch1"]["method"], "host": r["host"], "cpu": r["machine"]["cpu"]}
            for name, r in rows.items()]


def dump(rows: dict[str, dict]) -> str:
    return json.dumps(csv_rows(rows), indent=1) + "\n"


def readme(rows: list[dict]) -> list[str]:
    """The README's classifier block from plots/cls/variants.json (csv_rows' records)."""
    by_name = {r["variant"]: r for r in rows}
    best, lines = goal(by_name)
    first = rows[0]
    out = [f"Text classifier (all-MiniLM-L6-v2 fine-tuned on BBC News headlines; n = {first['num_examples']} "
           f"test examples for every variant; timed on {first['cpu']}, host `{first['host']}`). Goal: at "
           "least 6× smaller and 3× faster than fp32 on ONNX Runtime or OpenVINO, paired lower bound within "
           "1 point: " + (f"**met by `{best}`**." if best else "**not met**; closest: " + lines[0] + "."), "",
           "| variant | size MB | smaller × | batch-1 ms | faster × | acc % [95% CI] | Δacc vs fp32, paired (pt) |",
           "|---" * 7 + "|"]
    for r in sorted(rows, key=lambda r: -r["size_mb"]):
        a, d = r["acc_ci95"], r["delta_acc_ci95"]
        out.append(f"| `{r['variant']}` | {r['size_mb']:.1f} | {r['smaller']:.2f} | {r['latency_ms_median']:.2f} | "
                   f"{r['faster']:.2f} | {100 * r['acc']:.1f} [{100 * a[0]:.1f}, {100 * a[1]:.1f}] | "
                   f"{100 * r['delta_acc']:+.1f} [{100 * d[0]:+.1f}, {100 * d[1]:+.1f}] |")
    return out
