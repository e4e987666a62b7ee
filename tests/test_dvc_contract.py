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


def resolved():
    """Every stage as DVC resolves it (foreach and matrix expanded): name -> (group, cmd, deps, params)."""
    from dvc.repo import Repo

    out = {}
    for st in Repo(str(ROOT)).index.stages:
        params = [k for d in st.deps if type(d).__name__ == "ParamsDependency" for k in d.params]
        deps = [str(d.def_path) for d in st.deps if type(d).__name__ != "ParamsDependency"]
        out[st.addressing] = (st.addressing.split("@")[0], st.cmd, deps, params)
    return out


STAGES = resolved()


def entry_module(cmd: str) -> str:
    return re.search(r"python -m (stages\.entry\.\w+)", cmd).group(1)


def plugins(deps: list[str]) -> set[str]:
    """The plugin modules a stage names in its deps (it imports them by name, at run time)."""
    return {d[:-3].replace("/", ".") for d in deps
            if re.match(r"stages/(runtimes|methods)/lm/(?!base|__init__)\w+\.py$", d)}


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_cover_every_imported_project_module(name):
    _, cmd, deps, _ = STAGES[name]
    mods = set().union(closure(entry_module(cmd)), *(closure(m) for m in plugins(deps)))
    missing = [module_file(m).relative_to(ROOT).as_posix() for m in sorted(mods)
               if module_file(m).stat().st_size and not covered(module_file(m), deps)]
    assert not missing, f"stage {name} imports {missing} without listing them in deps"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_are_exactly_the_keys_the_stage_reads(name):
    group, cmd, _, params = STAGES[name]
    if group == "check_params":  # the one stage that reads the whole file
        assert params == [], "check_params must depend on the whole params.yaml"
        return
    declared = DVC[group].get("do", DVC[group]).get("params", [])
    module = importlib.import_module(entry_module(cmd))
    expected = module.PARAMS[group] if isinstance(module.PARAMS, dict) else module.PARAMS
    assert sorted(declared) == sorted(expected), f"dvc.yaml params of {group} != its PARAMS"
    # That each declared key is also read is checked where the stages really run:
    # tests/test_pipeline_e2e.py traces the keys every stage reads (STAGES_PARAMS_TRACE).


def test_a_plugin_edit_reruns_only_the_stages_that_use_it():
    """Each LM plugin file is a dep of exactly the stages of its runtime or method."""
    for name, (group, cmd, deps, _) in STAGES.items():
        named = plugins(deps)
        if group.startswith("lm_") and group != "lm_source":
            assert len(named) == 1, f"{name} depends on {sorted(named)}, not on its one plugin"
            kind = "runtimes" if "--runtime" in cmd or group.endswith(("_eval", "_bench", "_reference")) else "methods"
            assert next(iter(named)).startswith(f"stages.{kind}.lm."), name
        else:
            assert not named or group == "check_params", f"{name} depends on LM plugins {sorted(named)}"


def test_every_param_key_is_read_by_some_stage():
    from stages.schema.params import Params
    declared = {k for *_, params in STAGES.values() for k in params}
    # gpu_lm: read by stages/entry/lm_gpu.py, run by hand on a CUDA machine (README "GPU results")
    from stages.entry.lm_gpu import PARAMS as GPU_PARAMS
    declared |= set(GPU_PARAMS)
    # gpu_decode: its stages exist only once the gpu profile fills its rows (tests/test_gpu_decode.py)
    from stages.entry.gpu_decode import PARAMS as DECODE_PARAMS
    declared |= set(DECODE_PARAMS)
    for section in Params.model_fields:
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
                     "tasks", "meters", "reporting", "profiles"}   # profiles: run presets (YAML)
    assert not [p for p in (ROOT / "stages").glob("*.py") if p.name != "__init__.py"]


@pytest.mark.parametrize("stage, kind", [("coco_data", "coco"), ("lambada_data", "lambada")])
def test_a_data_stage_lists_every_source_it_can_load(stage, kind):
    """stages/datasets/<kind>.py imports its source by name at run time (coco_official, ...):
    the data stage depends on every one of them, so editing a source re-runs it."""
    deps = DVC[stage]["deps"]
    sources = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "stages" / "datasets").glob(f"{kind}_*.py"))
    assert len(sources) == 3
    for src in sources:
        assert src in deps, f"{stage} does not list {src}"
        for mod in sorted(closure(src[:-3].replace("/", "."))):
            if module_file(mod).stat().st_size:   # empty package __init__ files aside
                assert covered(module_file(mod), deps), f"{stage} does not list {mod}, which {src} imports"


def test_dvc_metrics_are_the_headline_files_alone():
    """`dvc metrics show` prints every file declared as metrics, one row each, a column per key:
    only the per-variant headline files (a dozen keys) are metrics; every stage's full record is
    a git-tracked output (cache: false), so the table stays readable."""
    declared = [next(iter(m)) if isinstance(m, dict) else m
                for st in DVC.values() for m in st.get("do", st).get("metrics", [])]
    assert declared == ["metrics/headline"]
    for st in DVC.values():
        for out in st.get("do", st).get("outs", []):
            path, opts = (next(iter(out.items())) if isinstance(out, dict) else (out, {}))
            if str(path).startswith("metrics/"):
                assert (opts or {}).get("cache") is False, f"{path}: a metrics file must be git-tracked"
