"""Detector variant names: LiteRT's are its precision ("int8"), the other runtimes' are
"<runtime>-<precision>" ("openvino-int8"); which precisions each runtime builds."""
from __future__ import annotations

# Precisions each runtime builds (LiteRT's are detector.precisions, the others' are
# detector.runtimes entries named <runtime>-<precision>, also their variant names).
RUNTIME_PRECISIONS = {"litert": ("float32", "float16", "int8", "int16x8", "dynamic_int8"),
                      "onnxruntime": ("float32", "int8"), "openvino": ("float32", "int8")}


def split_variant(name: str) -> tuple[str, str]:
    """Variant name -> (runtime, precision): "int8" is LiteRT's, "openvino-int8" OpenVINO's."""
    runtime, sep, precision = name.partition("-")
    if not sep:
        runtime, precision = "litert", name
    if runtime not in RUNTIME_PRECISIONS or runtime == "litert" and sep:
        others = " or ".join(r for r in RUNTIME_PRECISIONS if r != "litert")
        raise ValueError(f"unknown runtime {runtime!r} in {name!r}; expected {others} "
                         "(<runtime>-<precision>; LiteRT variants are detector.precisions)")
    if not sep and precision not in RUNTIME_PRECISIONS[runtime]:
        raise ValueError(f"unknown precision {name!r}; LiteRT builds "
                         f"{', '.join(RUNTIME_PRECISIONS[runtime])} (other runtimes: "
                         "<runtime>-<precision>)")
    if precision not in RUNTIME_PRECISIONS[runtime]:
        raise ValueError(f"unsupported (runtime, precision) pair {name!r}: {runtime} builds "
                         f"{', '.join(RUNTIME_PRECISIONS[runtime])}")
    return runtime, precision


# The python packages each runtime's stages import, pinned as in pyproject.toml.
PIP = {"onnxruntime": "onnxruntime==1.31.1", "openvino": "openvino==2026.4.1",
       "nncf": "nncf==3.4.0", "tf2onnx": "tf2onnx==1.17.0", "onnx": "onnx==1.23.2"}


def packages(variant: str) -> tuple[str, ...]:
    """Modules a variant's conversion and inference import (LiteRT's ship with the core)."""
    runtime, precision = split_variant(variant)
    extra = {"onnxruntime": (), "openvino": ("nncf",) if precision == "int8" else ()}
    return () if runtime == "litert" else ("onnx", "tf2onnx", runtime) + extra[runtime]


def missing_package(module: str) -> str:
    return (f"python package {module!r} is missing: pip install {PIP.get(module, module)} "
            "(or run `bash setup.sh`)")
