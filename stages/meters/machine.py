"""The machine and library versions a measurement was taken on (stored with every benchmark)."""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from pathlib import Path

LIBRARIES = ("torch", "tensorflow-cpu", "tensorflow", "ai-edge-litert", "transformers",
             "gptqmodel", "optimum", "pycocotools", "numpy", "dvc", "plotly", "kaleido")


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def gpu_name() -> str | None:
    with contextlib.suppress(Exception):
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    return None


def record(gpu: bool = False) -> dict:
    """CPU, cores, OS, Python and the versions of the libraries that matter here."""
    versions = {}
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    out = {"cpu": cpu_name(), "logical_cores": os.cpu_count(),
           "usable_cores": len(os.sched_getaffinity(0)), "os": platform.platform(),
           "python": platform.python_version(), "libraries": versions}
    if gpu:
        out["gpu"] = gpu_name()
    return out
