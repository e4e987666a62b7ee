"""lambada.source=local: a LAMBADA JSONL read in place (lambada.local_path)."""
from __future__ import annotations

from pathlib import Path

from stages.datasets.lambada import read_jsonl


def build(cfg: dict, articles: dict, eval_ids: list[str], seed: int, downloads: Path) -> list[dict]:
    return read_jsonl(Path(cfg["local_path"]))
