"""Energy rows of the detector's summary: metric files' energy figures flattened into
per-variant keys, carbon from a grid intensity, and break-even counts against the reference.

One inference is an image end to end: it drives `gco2e_per_1000` and `break_even_inferences`.
Break-even = the one-time conversion energy / the gross energy saved per image versus float32
on the same runtime, rounded up; null when the variant saves nothing per image (it never
repays), and "within noise" when the saving is inside the run-to-run spread: the end-to-end
figure is one window, so the spread is the bare-invoke figure's p10-p90 over its windows, and
the saving counts only where the variant's p90 lies below the reference's p10. The language models' energy per decoded token is in stages/reporting/lm.py's rows.
"""
from __future__ import annotations

import math

J_PER_KWH = 3.6e6
WORLD = 475.0   # gCO2e/kWh, codecarbon's world average (the energy.grid_gco2_per_kwh default)
DEFINITION = ("an image end to end (detector; break-even is the conversion energy over the "
              "gross energy saved per image versus float32 on the same runtime, and none where "
              "the variant saves nothing), a decoded token (language models: J/token in their tables).")
INFERENCE = {"detector": ("float32", "energy_j_per_image_e2e", "energy_j_per_image")}
NOISE = "within noise"


def flat(fig: dict, key: str) -> dict:
    """J per unit (median over windows), its p10-p90 spread and the median net of idle."""
    return {key: fig["j_per_unit"], f"{key}_p10_p90": [fig["j_per_unit_p10"], fig["j_per_unit_p90"]],
            f"{key}_net": fig["net_j_per_unit"]}


def fields(figures: dict[str, dict], primary: str, compress: dict | None) -> dict:
    """figures: {summary key: energy figure}; `primary` (the per-inference one) gives the
    method, power and idle power; `methods` lists every figure's method."""
    row = {}
    for key, fig in figures.items():
        row.update(flat(fig, key))
    main = figures[primary]
    row.update(energy_method=main["method"], energy_basis=main["basis"], power_w=main["power_w"],
               idle_power_w=main["idle_power_w"],
               energy_methods=sorted({f["method"] for f in figures.values()}),
               compress_energy_j=compress["joules"] if compress else None,
               compress_method=compress["method"] if compress else None)
    return row


def grams(joules: float | None, grid_gco2_per_kwh: float) -> float | None:
    return None if joules is None else joules / J_PER_KWH * grid_gco2_per_kwh


def break_even(compress_j: float | None, reference_j: float, variant_j: float) -> int | None:
    """Inferences after which the saving per inference repays compress_j; None: never."""
    saving = reference_j - variant_j
    if compress_j is None or saving <= 0:
        return None
    return max(1, math.ceil(compress_j / saving))


def resolved(reference: dict, variant: dict, spread_key: str) -> bool:
    """The variant's saving lies outside the run-to-run spread: its p90 is below the reference's
    p10 (both over repeated windows). No spread recorded: unresolved."""
    ref, var = reference.get(f"{spread_key}_p10_p90"), variant.get(f"{spread_key}_p10_p90")
    return bool(ref and var) and var[1] < ref[0]


def derive(rows: dict[str, dict], family: str, grid_gco2_per_kwh: float) -> dict[str, dict]:
    """Adds gco2e_per_1000, compress_gco2e and break_even_inferences to every row (in place)."""
    ref, key, spread_key = INFERENCE[family]
    for variant, row in rows.items():
        row["gco2e_per_1000"] = grams(1000 * row[key], grid_gco2_per_kwh)
        row["compress_gco2e"] = grams(row["compress_energy_j"], grid_gco2_per_kwh)
        own = reference(variant, ref, rows)
        even = None if variant == own else break_even(row["compress_energy_j"], rows[own][key], row[key])
        row["break_even_inferences"] = (NOISE if even is not None
                                        and not resolved(rows[own], row, spread_key) else even)
    return rows


def reference(variant: str, ref: str, rows: dict) -> str:
    """The uncompressed variant on the same runtime: `onnxruntime-int8` -> `onnxruntime-float32`
    (when present), a LiteRT precision or an LM variant -> `ref`."""
    runtime, sep, _ = variant.partition("-")
    own = f"{runtime}-{ref}"
    return own if sep and own in rows else ref


def notes(det: dict[str, dict]) -> list[str]:
    """Plain statements about the methods behind the energy figures, for the report."""
    out = []
    for name, rows in (("detector", det),):
        methods = sorted({m for r in rows.values() for m in r["energy_methods"]}
                         | {r["compress_method"] for r in rows.values() if r["compress_method"]})
        line = f"**{name.capitalize()} energy method: {', '.join(f'`{m}`' for m in methods)}**"
        if len(methods) > 1:
            line += (" — **mixed methods**: figures from different methods are not comparable "
                     "with each other; each table cell's method is in the metric files")
        out.append(line + f" ({next(iter(rows.values()))['energy_basis']}).")
        if "estimate" in methods:
            out.append(f"**{name.capitalize()}: `estimate` is not a measurement**: it is process "
                       "CPU time × a power per core, so it is proportional to CPU time and "
                       "carries no information beyond the speed numbers; its idle power is ~0 "
                       "by construction (a sleeping process uses no CPU time).")
    return out
