"""What a classifier runtime is: it builds a variant folder from a PyTorch node (model file
plus tokenizer) and opens it as a session that maps a batch of token ids to logits. The
shared stages score and time every runtime; a runtime never times itself."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

Batch = dict[str, np.ndarray]   # input_ids, attention_mask: int64 [batch, tokens]


class Session(ABC):
    @abstractmethod
    def logits(self, batch: Batch) -> np.ndarray:
        """float32 [batch, labels]."""


class ClsRuntime(ABC):
    name: str
    weights: tuple[str, ...]   # the model files of a built variant folder

    @abstractmethod
    def build(self, node: Path, out: Path, precision: str, calib: list[Batch]) -> None:
        """Write the variant into the new folder `out` (the tokenizer too)."""

    @abstractmethod
    def open(self, folder: Path, threads: int) -> Session:
        """A session on a built variant folder, at `threads` intra-op threads."""

    def size_mb(self, folder: Path) -> float:
        """Size on disk of the model files (`weights`), never the tokenizer's, in MB (10^6 B)."""
        return sum(f.stat().st_size for name in self.weights if (f := folder / name).is_file()) / 1e6


def logits_module(model):
    """The classifier as (input_ids, attention_mask) -> logits, the graph both exporters trace."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
    return LogitsOnly().eval()
