"""Logit distillation from a teacher (stages/methods/distill.py): the student is the source with
every `drop_every`-th decoder layer dropped (0 keeps all; a pruned source keeps its zeros), trained
on the calibration passages only."""
from __future__ import annotations

from pathlib import Path

from stages.methods import distill as D, prune as PR
from stages.methods.lm.base import LmMethod


class Distill(LmMethod):
    name = "distill"
    defaults = {"steps": 40, "batch_size": 4, "seq_len": 64, "lr": 1.0e-4, "temperature": 2.0,
                "alpha": 0.5, "drop_every": 2, "device": "cpu", "seed": 0}
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
