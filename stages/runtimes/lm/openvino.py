"""OpenVINO as an LM runtime: the source exported from PyTorch as a stateful OpenVINO graph (fused
SDPA holding the KV cache, stages/methods/ov_export.py), NNCF-compressed for int8/int4
(stages/methods/ov_build.py). One infer request keeps the cache as state; a step feeds only the
new ids and the mask, as a deployment does."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from stages.methods import ov_build
from stages.runtimes import openvino_lm as R
from stages.runtimes.lm.base import Knobs, LmRuntime, Session


class OvSession(Session):
    def __init__(self, folder: Path, threads: int):
        cm, self.setting = R.compile_model(folder, threads)
        self.run = R.Decoder(cm)

    def logits(self, ids: list[int]) -> np.ndarray:
        self.run.reset()
        return self.run.step(ids).copy()

    def reset(self, max_tokens: int = 512) -> None:
        self.run.reset()

    def step(self, ids: list[int]) -> np.ndarray:
        return self.run.step(ids)[-1].copy()


class OvKnobs(Knobs):
    precision: Literal["fp32", "int8", "int4"] = "fp32"   # int8: INT8_ASYM per channel; int4: INT4_SYM
    group_size: int = Field(64, ge=-1)                    # int4: columns per scale (-1 = per channel)
    ratio: float = Field(1.0, gt=0, le=1)                 # int4: fraction of the weights in int4


class OpenVino(LmRuntime):
    name = "openvino"
    modules = ("openvino", "nncf")
    packages = ("openvino", "nncf")
    precisions = dict(ov_build.PRECISIONS)
    unsupported = {"Gemma3ForCausalLM": "the stateful export (stages/methods/ov_export.py) traces one "
                   "cache shape; Gemma 3's sliding-window layers fail that trace"}
    knobs = OvKnobs

    def _build(self, source: Path, out: Path, knobs: dict) -> dict:
        return {"tensor_types": ov_build.build(source, out, knobs["precision"], knobs)}

    def _open(self, folder: Path, threads: int, knobs: dict, full_logits: bool) -> Session:
        return OvSession(Path(folder), threads)

    def weight_bytes_per_token(self, folder: Path) -> int:
        return R.weight_bytes_per_token(Path(folder))


RUNTIME = OpenVino()
