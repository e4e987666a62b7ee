"""LAMBADA-format text: reading JSONL, the sources' registry, and the calibration/evaluation
disjointness check (on text content: shared 13-word windows).

A source is a module `stages/datasets/lambada_<source>.py` with
`build(cfg, articles, eval_ids, seed, downloads) -> [{"text", "id"}]`.
"""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from stages.core.errors import PipelineError
from stages.core.files import read_text

NGRAM = 13  # overlap window in words, as GPT-3's decontamination


def source_module(name: str):
    return importlib.import_module(f"stages.datasets.lambada_{name}")


def read_jsonl(path: Path, what: str = "LAMBADA file") -> list[dict]:
    """Validated {"text", "id"} records; every line is checked, errors name the line."""
    if not Path(path).is_file():
        raise PipelineError(f"{what} not found: {path}")
    out = []
    for no, line in enumerate(read_text(path, what).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"{path}:{no}: corrupt JSON line ({exc})") from None
        text = rec.get("text") if isinstance(rec, dict) else None
        if not isinstance(text, str) or " " not in text.strip():
            raise PipelineError(f'{path}:{no}: missing "text" with a space-separated last word')
        out.append({"text": text, "id": rec.get("id", f"lambada:{no}")})
    if not out:
        raise PipelineError(f"{what} is empty: {path}")
    return out


def read_texts(path: Path, limit: int) -> list[str]:
    """The "text" of the first `limit` records of eval.jsonl (0 = all); every line checked."""
    texts = [r["text"] for r in read_jsonl(path, "evaluation file")]
    return texts[:limit] if limit else texts


def ngrams(text: str, n: int = NGRAM) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def overlapping(calib: list[dict], evals: list[dict]) -> set[str]:
    """Ids of calibration records sharing a 13-word window with any evaluated text (the BBC
    corpus holds near-duplicate articles, so a different id is not proof enough)."""
    seen = set().union(*(ngrams(e["text"]) for e in evals))
    return {c["id"] for c in calib if ngrams(c["text"]) & seen}


def check_disjoint(calib: list[dict], evals: list[dict]) -> None:
    leaks = overlapping(calib, evals)
    if leaks:
        raise PipelineError(f"calibration overlaps evaluation text: {sorted(leaks)[:5]}")
