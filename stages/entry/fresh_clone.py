"""Time what a newcomer waits for: `python -m stages.entry.fresh_clone`.

Clones this repository's HEAD into a new folder beside it (so `../shared` resolves as in the
checkout), then times, there and in this order: `bash setup.sh`, the README's test command
(`python -m pytest`) and the quick profile (`python -m stages.entry.profile quick`) on an empty
DVC cache, that is cold. The times, the commit and the host are merged into
metrics/run_time.json under "fresh_clone", which the README's quick start quotes.
`--steps quick --venv .venv` re-times the quick profile alone in a new clone with this
checkout's environment (the step then records its own commit). Each step's
output goes to <clone>/fresh_clone.<step>.log; the clone is removed at the end unless --keep.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

from stages.core.errors import PipelineError, log, run_main
from stages.core.files import read_json, write_json
from stages.entry.timed_repro import PYTEST, host

VENV = "source .venv/bin/activate && "
STEPS = (("setup", "bash setup.sh"),
         ("tests", VENV + "python -m pytest"),
         ("quick", VENV + "python -m stages.entry.profile quick"))


def cache_files(clone: Path) -> int:
    cache = clone / ".dvc" / "cache"
    return sum(1 for f in cache.rglob("*") if f.is_file()) if cache.is_dir() else 0


def step(name: str, command: str, clone: Path) -> dict:
    """Run one step in the clone; its wall time, exit code and (for pytest) its summary line."""
    log_path = clone / f"fresh_clone.{name}.log"
    log.info("%s: %s (log: %s)", name, command, log_path)
    t0 = time.monotonic()
    with open(log_path, "w") as out:
        code = subprocess.call(["bash", "-c", command], cwd=clone, stdout=out, stderr=subprocess.STDOUT)
    result = {"seconds": round(time.monotonic() - t0, 1), "exit_code": code}
    if name == "tests" and (m := PYTEST.search(log_path.read_text())):
        result["summary"] = m.group(1)
    log.info("%s: exit %d after %.0f s", name, code, result["seconds"])
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="metrics/run_time.json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the clone")
    ap.add_argument("--steps", nargs="+", choices=[n for n, _ in STEPS], default=[n for n, _ in STEPS],
                    help="time only these (in order); the others keep their recorded times")
    ap.add_argument("--venv", type=Path, help="without the setup step: link this set-up .venv into the clone")
    args = ap.parse_args(argv)
    alone = args.steps != [n for n, _ in STEPS]
    if alone and "setup" not in args.steps and not (args.venv and (args.venv / "bin" / "activate").is_file()):
        raise PipelineError("--steps without setup needs --venv <a set-up .venv> (bash setup.sh made it)")
    repo = Path(subprocess.check_output(["git", "rev-parse", "--show-toplevel"], text=True).strip())
    commit = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=repo, text=True).strip()
    clone = Path(tempfile.mkdtemp(prefix="fresh-clone-", dir=repo.parent))
    try:
        subprocess.check_call(["git", "clone", "--quiet", str(repo), str(clone)])
        if args.venv and "setup" not in args.steps:
            (clone / ".venv").symlink_to(args.venv.resolve())
        results = {}
        for name, command in STEPS:
            if name not in args.steps:
                continue
            if name == "quick":
                results["dvc_cache_files_before_quick"] = cache_files(clone)
            results[name] = step(name, command, clone)
            if results[name]["exit_code"] and name == "setup":
                raise PipelineError(f"bash setup.sh failed in {clone}: see fresh_clone.setup.log")
        doc = read_json(args.out, "run times") if args.out.is_file() else {"stages": {}}
        if alone:   # a step re-timed alone says which commit and environment it ran with
            for name in results.keys() & {n for n, _ in STEPS}:
                results[name].update(commit=commit, date=date.today().isoformat(), venv="setup" not in args.steps)
            doc["fresh_clone"] = {**doc.get("fresh_clone", {}), **results}
        else:
            doc["fresh_clone"] = {"commit": commit, "date": date.today().isoformat(), **host(), **results}
        write_json(args.out, doc)
        log.info("merged into %s: %s", args.out, doc["fresh_clone"])
    finally:
        if not args.keep:
            shutil.rmtree(clone, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
