"""Logit distillation from a teacher (stages/methods/distill.py): the student is the source with
every `drop_every`-th decoder layer dropped (0 keeps all; a pruned source keeps its zeros), trained
on the calibration passages only."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.methods import distill as D, prune as PR
from stages.methods.lm.base import LmMethod
from stages.runtimes.lm.base import Knobs


class DistillKnobs(Knobs):
    steps: int = Field(40, ge=1)                 # AdamW steps on the calibration passages only
    batch_size: int = Field(4, ge=1)             # windows per step
    seq_len: int = Field(64, ge=8)               # tokens per window
    lr: float = Field(1.0e-4, gt=0)              # constant after a 10 % linear warm-up
    temperature: float = Field(2.0, gt=0)        # of the KL term (Hinton et al., 2015)
    alpha: float = Field(0.5, ge=0, le=1)        # alpha * T^2 * KL + (1 - alpha) * LM loss
    drop_every: int = Field(2, ge=0)             # the student drops every n-th decoder layer (0: none)
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(2, ge=1)                # torch threads
    seed: int = 0


class Distill(LmMethod):
    name = "distill"
    knobs = DistillKnobs
    needs_calibration = needs_teacher = True

    def _apply(self, source: Path, out: Path, knobs: dict, calibration, teacher) -> dict:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        load = lambda f: AutoModelForCausalLM.from_pretrained(f, dtype=torch.float32).eval()  # noqa: E731
        student, tok = load(source), AutoTokenizer.from_pretrained(source)
        pruned = PR.sparsity(student) > 0.01   # a pruned input keeps its zeros while training
        masks = PR.masks(student) if pruned else None
        student = D.drop_layers(student, knobs["drop_every"]) if knobs["drop_every"] else student
        data = D.windows(tok, calibration, knobs["seq_len"])
        losses = D.train(student.to(knobs["device"]), load(teacher).to(knobs["device"]), data,
                         knobs, knobs["seed"], masks)
        student.cpu().save_pretrained(out)
        tok.save_pretrained(out)
        return {"losses": losses, "layers": student.config.num_hidden_layers}


METHOD = Distill()
