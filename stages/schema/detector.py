"""The detector's params sections: its images (coco), its model and conversions (detector) and
its timing protocol (bench_det). The detector's stages validate only these (and the shared
sections they read), so an edit of the language-model schema never re-runs them."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from stages.schema.section import Section, listify
from stages.schema.variants import split_variant

Seed = Annotated[int, Field(ge=0)]   # the top-level `seed`, as a section schema


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
