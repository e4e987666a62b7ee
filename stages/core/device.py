"""The device a step is set to run on, checked before any work: `device: cuda` on a machine
without CUDA is one line, not a torch error after the models have loaded."""
from __future__ import annotations

from stages.core.errors import PipelineError


def require_device(device: str, who: str) -> None:
    """One line where `who` (a params path) is set to CUDA and this machine has no CUDA device."""
    if device == "cuda":
        import torch   # only then: callers that never ask for CUDA stay light

        if not torch.cuda.is_available():
            raise PipelineError(f"{who}.device: cuda, but this machine has no CUDA device "
                                "(set device: cpu, or run on a GPU machine)")
