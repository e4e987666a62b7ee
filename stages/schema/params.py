"""Loading params.yaml through its schema (stages/schema/params_model.py).

A typo'd key is an error naming the closest valid key; an unknown choice or a value out of
range is one line naming the key. `load(path, keys)` validates the whole file (a typo
anywhere fails every stage) and returns only the keys a stage declares in dvc.yaml, as a
dict that records which keys the stage reads (tests compare them with dvc.yaml).
"""
from __future__ import annotations

import atexit
import copy
import difflib
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ruamel.yaml import YAML, YAMLError

from stages.core.errors import PipelineError
from stages.schema.params_model import Params

TRACE_ENV = "STAGES_PARAMS_TRACE"  # a file: every stage appends the param keys it read


class Tracked(dict):
    """A params dict that records every key read below it (dotted), for the contract tests."""

    def __init__(self, data: dict, prefix: str, seen: set):
        super().__init__({k: Tracked(v, f"{prefix}{k}.", seen) if isinstance(v, dict) else v
                          for k, v in data.items()})
        self._prefix, self._seen = prefix, seen

    def __getitem__(self, key):
        self._seen.add(f"{self._prefix}{key}")
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def items(self):
        self._seen.update(f"{self._prefix}{k}" for k in self.keys())
        return super().items()

    def __reduce__(self):
        # pickled (to a fresh process) without marking every key read: the copy records its
        # own reads, which fresh_process sends back to mark_read here
        return (Tracked, (self.plain(), self._prefix, set()))

    def reads(self) -> set[str]:
        return set(self._seen)

    def mark_read(self, keys) -> None:
        self._seen.update(keys)

    def plain(self) -> dict:
        """A plain, deep-copied dict (keys kept as they are: a per-width map keeps int keys)."""
        return {k: v.plain() if isinstance(v, Tracked) else copy.deepcopy(v) for k, v in dict.items(self)}


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


def read(path: str | Path = "params.yaml") -> dict:
    p = Path(path)
    if not p.is_file():
        raise PipelineError(f"params file not found: {p}")
    # YAML 1.2, as DVC reads and rewrites it (`dvc exp run -S` drops quotes): PyYAML's 1.1
    # would read an unquoted 2:4 as the base-60 integer 124.
    try:
        return YAML(typ="safe", pure=True).load(p.read_text())
    except YAMLError as exc:
        raise PipelineError(f"params file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None


def select(params: Params, keys: tuple[str, ...], seen: set | None = None) -> Tracked:
    """Only `keys` (dotted, as in dvc.yaml) as a nested dict; reading anything else is a KeyError."""
    full, out = params.model_dump(), {}
    for key in keys:
        node, dst, parts = full, out, key.split(".")
        for part in parts[:-1]:
            node, dst = node[part], dst.setdefault(part, {})
        dst[parts[-1]] = node[parts[-1]]
    return Tracked(out, "", seen if seen is not None else set())


def _trace(keys: tuple[str, ...], seen: set) -> None:
    """With STAGES_PARAMS_TRACE set, append {"declared", "read"} when the stage exits."""
    path = os.environ.get(TRACE_ENV)
    if path:
        def dump():
            with open(path, "a") as f:
                f.write(json.dumps({"stage": Path(sys.argv[0]).stem, "declared": sorted(keys),
                                    "read": sorted(seen)}) + "\n")
        atexit.register(dump)


def load(path: str | Path, keys: tuple[str, ...]) -> Tracked:
    """Validate the whole file, return the stage's keys (reads recorded)."""
    seen: set = set()
    _trace(keys, seen)
    return select(validate(read(path), Path(path)), keys, seen)
