"""Inference runtimes. A detector runtime is a module `stages/runtimes/<name>.py` with a class
`Detector(model_path, threads)` offering network(x) -> raw outputs, postprocess(**raw) ->
(boxes, classes, scores, count), and __call__(x) = postprocess(**network(x))."""
from __future__ import annotations

import importlib


def detector(runtime: str, model_path, threads: int):
    return importlib.import_module(f"stages.runtimes.{runtime}").Detector(model_path, threads)
