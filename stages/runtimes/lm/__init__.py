"""Language-model runtimes, registered by name: the module stages/runtimes/lm/<name>.py defines
RUNTIME, an instance of a base.LmRuntime subclass. Adding a runtime is one file here plus one
params entry; nothing else names it."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from stages.core.errors import PipelineError
from stages.runtimes.lm.base import LmRuntime


class Registry:
    """Plugins of one kind: every module of a package except `skip`, each defining `attr`, an
    object whose `name` is the module's name (the stages/methods/lm registry is one too)."""

    def __init__(self, package: str, folder: Path, attr: str, kind: str, skip=("base",)):
        self.package, self.folder, self.attr, self.kind, self.skip = package, folder, attr, kind, set(skip)

    def names(self) -> list[str]:
        return sorted(m.name for m in pkgutil.iter_modules([str(self.folder)]) if m.name not in self.skip)

    def get(self, name: str):
        """The plugin `name`, or one line listing the known ones."""
        if name not in self.names():
            raise PipelineError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
        plugin = getattr(importlib.import_module(f"{self.package}.{name}"), self.attr)
        assert plugin.name == name, f"{self.package}.{name} registers {plugin.name!r}"
        return plugin


RUNTIMES = Registry(__name__, Path(__file__).parent, "RUNTIME", "LM runtime")


def names() -> list[str]:
    """Every registered runtime, sorted."""
    return RUNTIMES.names()


def get(name: str) -> LmRuntime:
    return RUNTIMES.get(name)
