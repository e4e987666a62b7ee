"""The DVC contract, checked statically on dvc.yaml and the code (no stage runs here):
every stage lists every project module it imports and exactly the param keys it reads;
the layout has no import circles and short files."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
MAX_LINES = 250  # a file is one concern read top to bottom; 160 split concerns (issue 32), this catches sprawl


def module_file(name: str) -> Path:
    path = ROOT / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def project_imports(name: str) -> set[str]:
    """Modules under `stages` that module `name` imports (any depth inside the file)."""
    tree = ast.parse(module_file(name).read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("stages.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
            for a in node.names:  # `from stages.models import ssd_graph` imports a module
                sub = f"{node.module}.{a.name}"
                out.add(sub if module_file(sub).exists() else node.module)
    return {m for m in out if m != "stages"}


def closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")  # importing a.b.c runs a/__init__ and a/b/__init__ too
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]
        todo += sorted(project_imports(mod))
    return seen


def stage_defs():
    for name, st in DVC.items():
        yield name, st.get("do", st)


def entry_module(stage: dict) -> str:
    return re.search(r"python -m (stages\.entry\.\w+)", stage["cmd"]).group(1)


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name, stage", list(stage_defs()))
def test_deps_cover_every_imported_project_module(name, stage):
    deps = [d for d in stage["deps"]]
    missing = [module_file(m).relative_to(ROOT).as_posix() for m in sorted(closure(entry_module(stage)))
               if module_file(m).stat().st_size and not covered(module_file(m), deps)]
    assert not missing, f"stage {name} imports {missing} without listing them in deps"


@pytest.mark.parametrize("name, stage", list(stage_defs()))
def test_params_are_exactly_the_keys_the_stage_reads(name, stage):
    module = importlib.import_module(entry_module(stage))
    declared = [p for p in stage.get("params", []) if isinstance(p, str)]
    if name == "check_params":  # the one stage that reads the whole file
        assert stage["params"] == [{"params.yaml": None}]
        return
    assert sorted(declared) == sorted(module.PARAMS), f"dvc.yaml params of {name} != its PARAMS"
    # That each declared key is also read is checked where the stages really run:
    # tests/test_pipeline_e2e.py traces the keys every stage reads (STAGES_PARAMS_TRACE).


def test_every_param_key_is_read_by_some_stage():
    from stages.schema.params import Params
    declared = {p for _, st in stage_defs() for p in st.get("params", []) if isinstance(p, str)}
    # lm_chain declares `${item.method}`: the section of each chain node's method
    methods = {c["method"] for c in yaml.safe_load((ROOT / "params.yaml").read_text())["chains"].values()}
    declared |= {m for m in methods if "${item.method}" in declared}
    # gpu_lm: read by stages/entry/lm_gpu.py, run by hand on a CUDA machine (README "GPU results")
    from stages.entry.lm_gpu import PARAMS as GPU_PARAMS
    declared |= set(GPU_PARAMS)
    for section, field in Params.model_fields.items():
        assert section in declared or any(k.startswith(section + ".") for k in declared), section


def test_no_import_circles():
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "stages").rglob("*.py")
               if p.name != "__init__.py"}
    graph = {m: project_imports(m) & modules for m in modules}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in graph[m]:
            assert state.get(n) != 1, f"import circle: {' -> '.join(path + [n])}"
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])


def test_files_are_short_and_stages_is_organised_by_concern():
    long = [str(p.relative_to(ROOT)) for p in (ROOT / "stages").rglob("*.py")
            if len(p.read_text().splitlines()) > MAX_LINES]
    assert not long, f"files over {MAX_LINES} lines: {long}"
    rooms = {p.name for p in (ROOT / "stages").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert rooms == {"entry", "core", "schema", "datasets", "models", "methods", "runtimes",
                     "tasks", "meters", "reporting"}
    assert not [p for p in (ROOT / "stages").glob("*.py") if p.name != "__init__.py"]
