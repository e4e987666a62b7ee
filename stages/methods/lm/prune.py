"""Magnitude pruning of every decoder linear layer (stages/methods/prune.py): unstructured at
`sparsity`, or 2:4 (the 2 largest of every 4 consecutive inputs). The output is dense float."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.methods import prune as PR
from stages.methods.lm.base import LmMethod
from stages.runtimes.lm.base import Knobs


class PruneKnobs(Knobs):
    sparsity: float = Field(0.5, ge=0, lt=1)     # unstructured: fraction of each layer's weights zeroed
    pattern: Literal["unstructured", "2:4"] = "unstructured"


class Prune(LmMethod):
    name = "prune"
    knobs = PruneKnobs

    def _apply(self, source: Path, out: Path, knobs: dict, calibration, teacher) -> dict:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
        PR.check(model, knobs["pattern"])
        PR.prune(model, 0.5 if knobs["pattern"] == "2:4" else knobs["sparsity"], knobs["pattern"])
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(source).save_pretrained(out)
        return {"sparsity": round(PR.sparsity(model), 6), "pattern": knobs["pattern"]}


METHOD = Prune()
