"""lambada.source=official: OpenAI's lambada_test.jsonl, as lm-evaluation-harness
`lambada_openai` uses it (sha256 pinned by public loaders)."""
from __future__ import annotations

from pathlib import Path

from stages.core.download import download
from stages.datasets.lambada import read_jsonl

URL = "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl"
SHA256 = "4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226"


def build(cfg: dict, articles: dict, eval_ids: list[str], seed: int, downloads: Path) -> list[dict]:
    return read_jsonl(download(URL, downloads / "lambada_test.jsonl", SHA256))
