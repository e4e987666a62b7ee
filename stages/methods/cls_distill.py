"""Distillation into a shallower student (DistilBERT's recipe, Sanh et al. 2019): the student
is the teacher with `layers` of its encoder layers kept, evenly spaced (3 of 6: layers 0, 2,
4), initialized from those layers' weights, then trained on the teacher's soft targets plus
the labels (stages/methods/cls_train.py, `teacher=`)."""
from __future__ import annotations

import copy

from stages.core.errors import PipelineError
from stages.models.encoder import layers


def student(teacher, n_layers: int):
    """A copy of `teacher` keeping n_layers evenly spaced encoder layers."""
    import torch

    total = len(layers(teacher))
    if not 1 <= n_layers < total:
        raise PipelineError(f"distill: layers must be between 1 and {total - 1} (the teacher has {total})")
    keep = [round(i * total / n_layers) for i in range(n_layers)]
    model = copy.deepcopy(teacher)
    model.base_model.encoder.layer = torch.nn.ModuleList(layers(teacher)[i] for i in keep)
    model.base_model.encoder.layer = copy.deepcopy(model.base_model.encoder.layer)
    model.config.num_hidden_layers = n_layers
    return model, keep
