"""Reading params.yaml: YAML 1.2 as DVC writes it, a dict that records which keys a stage
reads (the contract tests compare them with dvc.yaml), and validation of only the sections a
stage reads, so a stage imports (and depends on) only its own sections' schemas. The whole
file is validated once, by the first stage (stages/schema/params.py, check_params)."""
from __future__ import annotations

import atexit
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from ruamel.yaml import YAML, YAMLError

from stages.core.errors import PipelineError

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


def select(params: BaseModel, keys: tuple[str, ...], seen: set | None = None) -> Tracked:
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


def load_sections(path: str | Path, keys: tuple[str, ...], schemas: dict[str, Any],
                  raw: dict | None = None) -> Tracked:
    """Validate only the top-level sections in `schemas` (each by its model), return `keys`."""
    raw = read(path) if raw is None else raw
    seen: set = set()
    _trace(keys, seen)
    if not isinstance(raw, dict):
        raise PipelineError(f"{path} must hold a mapping")
    checked = {}
    for name, schema in schemas.items():
        if name not in raw:
            raise PipelineError(f"{path}: missing key '{name}'")
        try:
            value = TypeAdapter(schema).validate_python(raw[name])
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join([name] + [str(p) for p in err["loc"]])
            raise PipelineError(f"{path}: {loc}: {err['msg'].removeprefix('Value error, ')}, "
                                f"got {err.get('input')!r}") from None
        checked[name] = TypeAdapter(schema).dump_python(value)
    full, out = checked, {}
    for key in keys:
        node, dst, parts = full, out, key.split(".")
        for part in parts[:-1]:
            node, dst = node[part], dst.setdefault(part, {})
        dst[parts[-1]] = node[parts[-1]]
    return Tracked(out, "", seen)
