"""Shared fixtures. Tests that need ../shared/data skip cleanly when it is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the calling test when it is missing."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not present: {p}")
    return p


@pytest.fixture
def coco_mini() -> Path:
    return shared_path("coco-val2017-mini")


@pytest.fixture
def coco_calib() -> Path:
    return shared_path("coco-val2017-calib", "images")


@pytest.fixture
def lambada_jsonl() -> Path:
    return shared_path("lambada", "lambada_test.jsonl")
