"""PyTorch (eager, float32): the fine-tuned or compressed node as saved."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from stages.models import encoder
from stages.runtimes.cls.base import Batch, ClsRuntime, Session


class TorchSession(Session):
    def __init__(self, folder: Path, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.model, _ = encoder.load(folder)

    def logits(self, batch: Batch) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()


class Pytorch(ClsRuntime):
    name = "pytorch"
    weights = ("model.safetensors",)

    def build(self, node: Path, out: Path, precision: str, calib: list[Batch]) -> None:
        shutil.copytree(node, out)

    def open(self, folder: Path, threads: int) -> Session:
        return TorchSession(folder, threads)


RUNTIME = Pytorch()
