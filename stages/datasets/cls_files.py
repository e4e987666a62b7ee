"""The classifier's data folder as cls_data writes it (train, val, test and calib JSONL, and
labels.json), read by every later classifier stage: the format alone, so a change to how a
source is read (stages/datasets/topics.py) re-runs cls_data only."""
from __future__ import annotations

import json
from pathlib import Path

from stages.core.files import read_text


def read_split(folder: Path, name: str) -> list[dict]:
    """A split written by cls_data (train, val, test or calib)."""
    path = folder / f"{name}.jsonl"
    return [json.loads(line) for line in read_text(path, "classifier split").splitlines() if line.strip()]


def read_labels(folder: Path) -> list[str]:
    return json.loads(read_text(folder / "labels.json", "classifier labels"))
