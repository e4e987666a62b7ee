"""Language-model compression methods, registered by name: the module
stages/methods/lm/<name>.py defines METHOD, an instance of a base.LmMethod subclass. Adding a
method is one file here plus one params entry; nothing else names it."""
from __future__ import annotations

from pathlib import Path

from stages.methods.lm.base import LmMethod
from stages.runtimes.lm import Registry

METHODS = Registry(__name__, Path(__file__).parent, "METHOD", "LM compression method")


def names() -> list[str]:
    """Every registered method, sorted."""
    return METHODS.names()


def get(name: str) -> LmMethod:
    return METHODS.get(name)
