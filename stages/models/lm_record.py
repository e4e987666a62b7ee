"""A language-model artifact's identity travels with it: every model folder of the LM stages
holds record.json (model, architecture, weights' provenance, then each compression step with its
knobs; a runtime build adds the runtime and its knobs). Metric files copy it, so reports read
identities from records and never parse them back from names or paths."""
from __future__ import annotations

import json
from pathlib import Path

from stages.core.errors import PipelineError

RECORD = "record.json"


def read(folder: Path) -> dict:
    path = Path(folder) / RECORD
    if not path.is_file():
        raise PipelineError(f"no {RECORD} in {folder}: not a model folder made by the LM stages")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} is not valid JSON ({exc})") from None


def units(folder: Path) -> list[tuple[str, Path]]:
    """[("", folder)] for one artifact, or [("int<bits>", subfolder), ...] for a quant sweep
    folder (one artifact per width, widest first)."""
    folder = Path(folder)
    if (folder / RECORD).is_file():
        return [("", folder)]
    subs = sorted((d for d in folder.glob("int*") if (d / RECORD).is_file()), key=lambda d: -int(d.name[3:]))
    if not subs:
        raise PipelineError(f"no {RECORD} in {folder} nor in int<bits>/ subfolders: not made by the LM stages")
    return [(d.name, d) for d in subs]


def write(folder: Path, record: dict) -> None:
    (Path(folder) / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def name(record: dict) -> str:
    """`model · method chain · runtime precision`, derived from a record (never parsed back)."""
    steps = []
    for s in record["chain"]:
        k = s["knobs"]
        steps.append(s["method"] + (f"-int{k['bits']}" if "bits" in k else "")
                     + (f"-{k['pattern']}" if k.get("pattern", "unstructured") != "unstructured" else ""))
    label = "+".join(steps) or "base"
    if "runtime" not in record:
        return f"{record['model']} · {label}"
    prec = record["knobs"].get("precision")
    return f"{record['model']} · {label} · {record['runtime']}" + (f" {prec}" if prec else "")
