"""The base of every params section: strict types, no extra keys, frozen."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def int_keys(value: Any) -> Any:
    """`-S eval_lm.backend.4=...` writes the key as a string: accept "4" as 4."""
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
    return value


def listify(value: Any) -> Any:
    """`dvc exp run -S quant.bits=4` turns a list into a scalar: accept both."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
