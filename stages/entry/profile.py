"""Run a profile: `python -m stages.entry.profile quick [dvc exp run arguments]`.

A profile is a committed list of `dvc exp run -S` overrides (stages/profiles/<name>.yaml). This
applies them to a copy of params.yaml and checks the result against the params schema first, so
a bad override is one line before DVC starts; then it runs `dvc exp run -S ... [arguments]` in
this workspace, printing the command. The result is an ordinary DVC experiment: `dvc exp show`
lists it, `plots/report.md` shows it, and `git checkout -- . && dvc checkout` returns to the
default. The README's time for it is measured by stages/entry/fresh_clone.py.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from stages.core.errors import PipelineError, log, run_main
from stages.core.files import atomic_path
from stages.entry.check_params import preflight
from stages.schema import params as P

FOLDER = Path(__file__).resolve().parents[1] / "profiles"


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


def profile(name: str) -> dict:
    path = FOLDER / f"{name}.yaml"
    if not path.is_file():
        raise PipelineError(f"unknown profile {name!r}; profiles: {', '.join(names())}")
    doc = yaml.safe_load(path.read_text())
    return doc if isinstance(doc, dict) else {}


def overrides(name: str) -> list[str]:
    """The profile's `-S` overrides, in order."""
    items = profile(name).get("overrides")
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise PipelineError(f"{FOLDER / name}.yaml: expected a list of strings under 'overrides'")
    return items


def targets(name: str) -> list[str]:
    """The stages the profile runs (with their upstream); none listed: the whole DAG."""
    items = profile(name).get("targets", [])
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise PipelineError(f"{FOLDER / name}.yaml: expected a list of stage names under 'targets'")
    return items


def effective(params: Path, items: list[str]) -> list[str]:
    """The overrides without the deletions of keys already absent, so that a profile applies
    again on top of itself (a second run in the same workspace)."""
    raw = yaml.safe_load(params.read_text()) or {}

    def present(key: str) -> bool:
        node = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    return [x for x in items if not (x.startswith("~") and "=" not in x and not present(x[1:]))]


def applied(params: Path, items: list[str], whole_dag: bool = True) -> dict:
    """params.yaml with the overrides applied by DVC's own code (as `dvc exp run -S` will), then
    validated (and, for a profile of the whole DAG, every runtime's package looked up, as
    check_params will); the file itself is left as it is."""
    from dvc.utils.hydra import apply_overrides   # DVC's -S parser (Hydra's override grammar)

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "params.yaml"
        shutil.copyfile(params, copy)
        try:
            apply_overrides(copy, items)
        except Exception as exc:   # DVC raises its InvalidArgumentError with Hydra's cause
            cause = exc.__cause__ or exc
            raise PipelineError(f"a profile override does not apply: {str(cause).splitlines()[0]}") from None
        valid = P.validate(P.read(copy), params)
        if whole_dag:
            preflight(valid)   # exactly what check_params will run
        return yaml.safe_load(copy.read_text())


def dag_stages(params: dict) -> set[str]:
    """The stage names of this dvc.yaml under `params`, as DVC expands its foreach items: `dvc
    stage list` in a scratch DVC project that holds only dvc.yaml and those params."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile("dvc.yaml", Path(tmp) / "dvc.yaml")
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp, check=True)
        listed = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=tmp, check=True,
                                capture_output=True, text=True).stdout
    return set(listed.split())


def trim_lock(lock: Path, keep: set[str]) -> int:
    """Drop the lock entries of stages outside the profile's DAG; returns how many. DVC reads
    and rewrites the whole dvc.lock around every stage it runs: for the default's 174 stages
    (700 kB) that took about 5 s per stage on a 2-core AMD EPYC, so a profile of 55 stages paid
    for the other 119 at each of its own. The experiment's lock then records the profile's DAG
    alone; `git checkout -- .` gives the default's back."""
    from dvc.utils.serialize import dump_yaml, load_yaml   # DVC's own lock format

    if not lock.is_file():
        return 0
    doc = load_yaml(lock)
    stages = doc.get("stages", {})
    kept = {name: entry for name, entry in stages.items() if name in keep}
    if len(kept) < len(stages):
        with atomic_path(lock) as tmp:   # an interrupted trim leaves the old lock
            dump_yaml(tmp, {**doc, "stages": kept})
    return len(stages) - len(kept)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a file stem in stages/profiles (quick)")
    ap.add_argument("--params", default="params.yaml", type=Path)
    args, rest = ap.parse_known_args(argv)
    items, stages = effective(args.params, overrides(args.name)), targets(args.name)
    dropped = trim_lock(Path("dvc.lock"), dag_stages(applied(args.params, items, not stages)))
    if dropped:
        log.info("dvc.lock: dropped the entries of %d stages outside the %s profile", dropped, args.name)
    cmd = ["dvc", "exp", "run", "--message", f"profile {args.name}", *rest, *stages]
    for item in items:
        cmd += ["-S", item]
    print("$ " + shlex.join(cmd), flush=True)
    t0 = time.monotonic()
    code = subprocess.call(cmd)
    seconds = round(time.monotonic() - t0, 1)
    log.info("profile %s: dvc exp run exited %d after %.0f s", args.name, code, seconds)
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    run_main(main)
