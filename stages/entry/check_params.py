"""First stage of the DAG: check every param of params.yaml before any stage removes anything.

DVC deletes a stage's outputs before running its command, so a stage that finds a bad
param itself has already lost its old outputs. Every stage depends on this stage's marker,
so `dvc repro` runs this check first and stops on a bad param with one `error:` line.
The marker's content never changes, so a passing check invalidates nothing downstream.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from stages.core.errors import PipelineError, run_main
from stages.core.files import atomic_path, read_json
from stages.datasets.coco import read_gt
from stages.datasets.topics import local_examples
from stages.datasets.lambada import read_jsonl
from stages.meters.cpu_power import grid_intensity
from stages.meters.energy_sources import nvml_handle
from stages.schema import params as P
from stages.models.lm_source import check_local
from stages.schema.lm_plugins import check_plugins
from stages.schema.params_model import Params
from stages.schema.variants import missing_package, packages

MARKER = "params checked against stages/schema/params.py\n"


def preflight(p: Params) -> None:
    """Inputs the chosen sources read in place must exist and parse (before any stage runs)."""
    local = []
    if p.coco.source == "local":
        local += [("coco.local.images", p.coco.local.images, Path.is_dir),
                  ("coco.local.annotations", p.coco.local.annotations, Path.is_file),
                  ("coco.local.calib_images", p.coco.local.calib_images, Path.is_dir)]
    if p.lambada.source == "local":
        local.append(("lambada.local_path", p.lambada.local_path, Path.is_file))
    if p.classifier.data.source == "local":
        local.append(("classifier.data.local_path", p.classifier.data.local_path, Path.is_file))
    for key, value, exists in local:
        if not exists(Path(value)):
            raise PipelineError(f"{key}: {value} not found")
    # the content of what is read in place, here, so that bad content stops the run before any
    # stage (and its dvc.lock entry) moves; the stages check it again, deeper, as they read it
    if p.coco.source == "local":
        read_gt(Path(p.coco.local.annotations))
    if p.lambada.source == "local":
        read_jsonl(Path(p.lambada.local_path))
    if p.classifier.data.source == "local":
        local_examples(Path(p.classifier.data.local_path))
    for m in p.models.values():
        if m.weights.source == "local":
            check_local(Path(m.weights.path))
            read_json(Path(m.weights.path) / "config.json", "model config")
    if p.energy.method == "nvml":
        nvml_handle()  # one line when there is no NVIDIA GPU or driver here
    grid_intensity(p.energy.grid_gco2_per_kwh, p.energy.grid_country)  # an unknown country code
    check_plugins(p)   # every LM plugin, knob and (model, method, runtime) cell, before any work
    for variant in p.detector.runtimes:  # a runtime's packages, before any stage converts
        for module in packages(variant):
            if importlib.util.find_spec(module) is None:
                raise PipelineError(f"detector.runtimes: {variant}: {missing_package(module)}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    preflight(P.validate(P.read(args.params), Path(args.params)))
    with atomic_path(args.out) as tmp:
        tmp.write_text(MARKER)


if __name__ == "__main__":
    run_main(main)
