"""The one typed schema of params.yaml: every knob's type, bounds and choices, declared once
(pydantic, extra keys forbidden). params.yaml's comments say what each knob does. The
language-model sections live in params_lm.py."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BeforeValidator, Field, field_validator, model_validator

from stages.schema.variants import RUNTIME_PRECISIONS, split_variant  # noqa: F401 (re-exported)

from stages.schema.common import Bootstrap, Energy
from stages.schema.lm_tables import LmTables
from stages.schema.lm_protocol import BenchLm, EvalLm
from stages.schema.params_lm import GpuLm, Lambada
from stages.schema.section import Section, listify


class CocoLocal(Section):
    images: str              # folder of COCO JPEGs (read in place)
    annotations: str         # instances_*.json of those images
    calib_images: str        # a separate folder of calibration images


class CocoOfficial(Section):
    calib_split: Literal["train2017"]  # calibration images come from a split never evaluated


class Coco(Section):
    source: Literal["offline", "local", "official"]
    num_images: int = Field(ge=0)      # first N image ids in sorted order (0 = all)
    local: CocoLocal
    official: CocoOfficial


Precision = Literal["float32", "float16", "int8", "int16x8", "dynamic_int8"]
class DetPtq(Section):
    """ONNX Runtime / OpenVINO static int8 (det_convert_rt; LiteRT's int8 quantizes every layer)."""
    float_box_head: bool                                      # the 6 BoxEncodingPredictor convs in float32
    overflow_fix: Literal["enable", "first_layer", "disable"]  # NNCF: 7-bit weights in all / first / no layers


class Detector(Section):
    source: Literal["package", "official"]
    precisions: Annotated[list[Precision], BeforeValidator(listify)]
    runtimes: Annotated[list[str], BeforeValidator(listify)]
    calib_size: int = Field(ge=1)
    score_threshold: float = Field(ge=0, le=1)
    iou_threshold: float = Field(gt=0, le=1)
    max_detections: int = Field(ge=1)
    ptq: DetPtq

    @model_validator(mode="after")
    def _reference(self):
        if "float32" not in self.precisions:
            raise ValueError("must include float32 (the agreement reference)")
        if len(set(self.precisions)) != len(self.precisions):
            raise ValueError("lists a precision twice")
        return self

    @field_validator("runtimes")
    @classmethod
    def _variants(cls, names: list[str]) -> list[str]:
        for name in names:
            split_variant(name)
        if len(set(names)) != len(names):
            raise ValueError("lists a variant twice")
        return names


class BenchDet(Section):
    threads: int = Field(ge=1)
    warmup: int = Field(ge=0)
    latency_runs: int = Field(ge=1)


class Params(LmTables):
    """The whole file: the detector's and the shared sections, the LM sections and the LM
    tables (whose validator checks their graph; check_params then checks the plugins)."""
    seed: int = Field(ge=0)
    coco: Coco
    detector: Detector
    bootstrap: Bootstrap
    bench_det: BenchDet
    lambada: Lambada
    eval_lm: EvalLm
    bench_lm: BenchLm
    gpu_lm: GpuLm
    energy: Energy
