"""Loading params.yaml through its schema (stages/schema/params_model.py).

A typo'd key is an error naming the closest valid key; an unknown choice or a value out of
range is one line naming the key. `load(path, keys)` validates the whole file (a typo
anywhere fails every stage) and returns only the keys a stage declares in dvc.yaml, as a
dict that records which keys the stage reads (tests compare them with dvc.yaml).
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from stages.core.errors import PipelineError
from stages.schema.load import Tracked, _trace, read, select  # noqa: F401 (re-exported)
from stages.schema.params_model import Params


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = Params
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return model


def explain(exc: ValidationError, path: Path) -> str:
    """The first validation error as one line, with the closest key for a typo."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if isinstance(p, str))
    key = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        near = difflib.get_close_matches(loc[-1], list(parent.model_fields) if parent else [], 1, 0.4)
        hint = f" (did you mean '{'.'.join(loc[:-1] + (near[0],))}'?)" if near else ""
        return f"{path}: unknown key '{key}'{hint}"
    if err["type"] == "missing":
        return f"{path}: missing key '{key}'"
    got = err.get("input")
    msg = err["msg"].removeprefix("Value error, ")
    return f"{path}: {key}: {msg}, got {got!r}" if not isinstance(got, dict) else f"{path}: {key}: {msg}"


def validate(raw: Any, path: Path = Path("params.yaml")) -> Params:
    if not isinstance(raw, dict):
        raise PipelineError(f"{path} must hold a mapping")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise PipelineError(explain(exc, path)) from None


def load(path: str | Path, keys: tuple[str, ...]) -> Tracked:
    """Validate the whole file, return the stage's keys (reads recorded)."""
    seen: set = set()
    _trace(keys, seen)
    return select(validate(read(path), Path(path)), keys, seen)
