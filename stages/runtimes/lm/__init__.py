"""Language-model runtimes, registered by name: the module stages/runtimes/lm/<name>.py defines
RUNTIME, an instance of a base.LmRuntime subclass. Adding a runtime is one file here plus one
params entry; nothing else names it."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from stages.core.errors import PipelineError
from stages.runtimes.lm.base import LmRuntime

NOT_RUNTIMES = {"base"}


def names() -> list[str]:
    """Every registered runtime, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                  if m.name not in NOT_RUNTIMES)


def get(name: str) -> LmRuntime:
    """The runtime `name`, or one line listing the known ones."""
    if name not in names():
        raise PipelineError(f"unknown LM runtime {name!r} (known: {', '.join(names())})")
    runtime = importlib.import_module(f"stages.runtimes.lm.{name}").RUNTIME
    assert runtime.name == name, f"stages/runtimes/lm/{name}.py registers {runtime.name!r}"
    return runtime
