"""Classifier runtimes, registered by name: stages/runtimes/cls/<name>.py defines RUNTIME, a
base.ClsRuntime. Adding a runtime is one file here plus its precisions in
stages/schema/classifier.py (RUNTIME_PRECISIONS)."""
from __future__ import annotations

import importlib

from stages.core.errors import PipelineError
from stages.runtimes.cls.base import ClsRuntime
from stages.schema.classifier import RUNTIME_PRECISIONS


def get(name: str) -> ClsRuntime:
    """The runtime `name`, or one line listing the known ones."""
    if name not in RUNTIME_PRECISIONS:
        raise PipelineError(f"unknown classifier runtime {name!r} (known: {', '.join(RUNTIME_PRECISIONS)})")
    return importlib.import_module(f"{__name__}.{name}").RUNTIME
