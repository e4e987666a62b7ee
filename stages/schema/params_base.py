"""The base of every params section (strict, extra keys forbidden) and the scalar-to-list
coercion `dvc exp run -S` needs; shared by params_model.py and runtimes_model.py."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def _listify(value: Any) -> Any:
    """`dvc exp run -S quant.bits=4` turns a list into a scalar: accept both."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
