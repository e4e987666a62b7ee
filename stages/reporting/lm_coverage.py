"""Which cells of the (model x runtime) and (model x method) grids a run filled, and why each
empty one is empty: the runtime cannot build that architecture (the reason its plugin
declares, the same line check_params gives), or the run's params.yaml did not ask for it."""
from __future__ import annotations

from pathlib import Path

from stages.core.files import read_json
from stages.methods import lm as methods
from stages.runtimes import lm as runtimes
from stages.schema.lm_plugins import unsupported


def base_of(root: Path, model: str) -> str:
    """What a model's `base` is, from its source record (a GGUF package's base is dequantized)."""
    path = root / "lm" / "source" / f"{model}.json"
    if not path.is_file():
        return "its weights as given"
    rec = read_json(path, "LM source metric file")["record"]
    if rec.get("gguf_sha256"):
        return (f"the GGUF of package {rec.get('package')} {rec.get('version')} dequantized to float32 "
                "(its quantization error is in every row)")
    return f"{rec.get('hub') or rec.get('local') or 'its'} float weights"


def _runtime_cell(rows: list[dict], name: str, arch: str) -> str:
    mine = [r for r in rows if r["runtime"] == name]
    if mine:
        return f"{len(mine)} run"
    why = unsupported(runtimes.get(name), arch)   # the reason check_params refuses the cell with
    if why:
        return f"unsupported: {why}"
    return "not run: not in this run's `variants` or `quant.runtimes`"


def _method_cell(rows: list[dict], name: str) -> str:
    mine = [r for r in rows if name in r["chain"].split("+")]
    if mine:
        return f"{len(mine)} run"
    return "not run: not in this run's `quant` or `compress` tables"


def table(rows: dict[str, dict], models: dict[str, dict]) -> list[str]:
    """A Markdown grid: a column per model, a row per registered runtime and method."""
    names = sorted(models)
    by_model = {m: [r for r in rows.values() if r["model"] == m] for m in names}
    out = ["| plugin | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name in runtimes.names():
        cells = [_runtime_cell(by_model[m], name, models[m]["architecture"]) for m in names]
        out.append(f"| runtime `{name}` | " + " | ".join(cells) + " |")
    for name in methods.names():
        out.append(f"| method `{name}` | " + " | ".join(_method_cell(by_model[m], name) for m in names) + " |")
    return out
