"""The one typed schema of params.yaml: every knob's type, bounds and choices, declared once
(pydantic, extra keys forbidden). params.yaml's comments say what each knob does. The
detector's sections live in detector.py, the language-model sections in params_lm.py,
lm_protocol.py and lm_tables.py."""
from __future__ import annotations

from pydantic import Field

from stages.schema.classifier import Classifier
from stages.schema.common import Bootstrap, Energy
from stages.schema.detector import BenchDet, Coco, Detector
from stages.schema.gpu_decode import GpuDecode
from stages.schema.host import HostName
from stages.schema.lm_tables import LmTables
from stages.schema.lm_protocol import BenchLm, EvalLm
from stages.schema.params_lm import GpuLm, Lambada
from stages.schema.section import Section


class Verdict(Section):
    pass_fraction: float = Field(gt=0, le=1)   # MLPerf's gate: this fraction of the reference's accuracy


class Params(LmTables):
    """The whole file: the detector's and the shared sections, the LM sections and the LM
    tables (whose validator checks their graph; check_params then checks the plugins)."""
    seed: int = Field(ge=0)
    host: HostName                      # this machine's name: benchmarks are filed under it
    coco: Coco
    detector: Detector
    bootstrap: Bootstrap
    bench_det: BenchDet
    lambada: Lambada
    eval_lm: EvalLm
    bench_lm: BenchLm
    gpu_lm: GpuLm
    gpu_decode: GpuDecode
    energy: Energy
    verdict: Verdict
    classifier: Classifier
