"""The compression-method interface: a method turns one HF model folder into another
(`apply(source, out, knobs, calibration, teacher)`), float in; a quantizer writes a GPTQ/AWQ
checkpoint that the PyTorch runtime loads, a dense method (prune, distill) a float folder.
Methods never score or time themselves; chains are sequences of applications."""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path

from stages.core.errors import PipelineError
from stages.runtimes.lm.base import Knobs, validate_knobs


class LmMethod(ABC):
    name: str = ""
    knobs: type[Knobs] = Knobs       # its knobs with their defaults (a params entry overrides them)
    needs_calibration = False        # reads calibration passages (never evaluated ones)
    needs_teacher = False            # reads the teacher model folder (distillation)
    quantizes = False                # writes quantized weights (its output is the chain's end)
    format: str | None = None        # the quant_method its checkpoint declares (what a runtime loads)

    def validate(self, knobs: dict) -> dict:
        """Its knobs over its defaults, or one line naming the bad knob."""
        return validate_knobs(self.knobs, knobs, self.name)

    def check(self, source: Path, knobs: dict) -> None:
        """One line, before any work, where the method cannot apply to `source` (knobs: validated)."""
        cfg_path = Path(source) / "config.json"
        if not cfg_path.is_file():
            raise PipelineError(f"{self.name}: no config.json in {source}")
        if json.loads(cfg_path.read_text()).get("quantization_config"):
            raise PipelineError(f"{self.name}: {source} is already quantized; "
                                f"a quantizer ends a chain, so apply {self.name} before it")

    def apply(self, source: Path, out: Path, knobs: dict, calibration: list[str] | None = None,
              teacher: Path | None = None) -> dict:
        """Write the compressed model folder `out` (created); returns what the step did."""
        knobs = validate_knobs(self.knobs, knobs, self.name)
        self.check(source, knobs)
        if self.needs_calibration and not calibration:
            raise PipelineError(f"{self.name} needs calibration passages")
        if self.needs_teacher and teacher is None:
            raise PipelineError(f"{self.name} needs a teacher model folder")
        info = self._apply(Path(source), Path(out), knobs, calibration, teacher)
        name = json.loads((Path(source) / "config.json").read_text()).get("_name_or_path") or "model"
        relabel(Path(out), f"{Path(name).name}-{self.name}")
        return info

    @abstractmethod
    def _apply(self, source: Path, out: Path, knobs: dict, calibration, teacher) -> dict:
        """The method itself: `out` does not exist yet."""


def relabel(folder: Path, name: str) -> None:
    """The saved config's _name_or_path set to a name, never a local path (outputs are
    path-independent; some libraries write their temporary paths there)."""
    path = folder / "config.json"
    doc = json.loads(path.read_text())
    doc["_name_or_path"] = name
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
