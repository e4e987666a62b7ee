"""`dvc repro` that records how long each stage took: `python -m stages.entry.timed_repro
[dvc repro arguments]` runs `dvc repro`, shows its output, and merges the wall time of every
stage it ran into metrics/run_time.json with the machine it ran on. A stage DVC skipped keeps
its earlier figure. The README's run time is the sum over dvc.yaml's stages in that file
(python -m stages.entry.readme), so it is a measurement, never a guess.

`--log FILE` reads a saved `dvc repro` log instead of running it: each stage's time is then
from its first to its last log line's clock (HH:MM:SS), recorded as that method.
`--pytest` runs `python -m pytest [arguments]` instead and records its wall time as "tests"
(with `--log`, a saved pytest log's own "... in N s" line is read)."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from stages.core.errors import PipelineError, run_main
from stages.core.files import read_json, write_json
from stages.meters.machine import record

RUNNING = re.compile(r"^Running stage '([^']+)':")
DONE = re.compile(r"^Updating lock file")
CLOCK = re.compile(r"^(\d\d:\d\d:\d\d) ")
PYTEST = re.compile(r"^=* ?((?:\d+ \w+, )*\d+ passed[^\n]*?) in ([\d.]+)s", re.M)


def host() -> dict:
    """The CPU and usable cores a time was measured on."""
    machine = record()
    return {"cpu": machine.get("cpu"), "cores": machine.get("usable_cores")}


def run(args: list[str], times: dict[str, float]) -> None:
    """Run `dvc repro args`, echo it, fill {stage: wall seconds} as each stage finishes."""
    stage, t0 = None, 0.0
    proc = subprocess.Popen(["dvc", "repro", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    for line in proc.stdout:
        sys.stdout.write(line)
        if m := RUNNING.match(line):
            stage, t0 = m.group(1), time.monotonic()
        elif DONE.match(line) and stage:
            times[stage], stage = round(time.monotonic() - t0, 1), None
    if proc.wait():
        raise PipelineError(f"dvc repro failed (exit {proc.returncode}); the stages it finished are recorded")


def from_log(text: str) -> dict[str, float]:
    """{stage: seconds} from a saved log: first to last HH:MM:SS line inside each stage."""
    times, stage, clocks = {}, None, []

    def close():
        if stage and len(clocks) > 1:
            span = (clocks[-1] - clocks[0]).total_seconds()
            times[stage] = round(span + 86400 * (span < 0), 1)

    for line in text.splitlines():   # a stage with no "Updating lock file" after it did not finish
        if m := RUNNING.match(line):
            stage, clocks = m.group(1), []
        elif stage and (c := CLOCK.match(line)):
            clocks.append(datetime.strptime(c.group(1), "%H:%M:%S"))
        elif DONE.match(line):
            close()
            stage = None
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="metrics/run_time.json", type=Path)
    ap.add_argument("--log", type=Path, help="a saved `dvc repro` log to read instead of running")
    ap.add_argument("--pytest", action="store_true", help="time the test suite instead")
    args, rest = ap.parse_known_args(argv)
    doc = read_json(args.out, "run times") if args.out.is_file() else {"stages": {}}
    if args.pytest and args.log:
        m = PYTEST.search(args.log.read_text())
        if not m:
            raise PipelineError(f"{args.log}: no pytest summary line ('N passed in S s')")
        doc["tests"] = {"seconds": float(m.group(2)), "summary": m.group(1), **host()}
        write_json(args.out, doc)
        return
    if args.pytest:
        t0 = time.monotonic()
        code = subprocess.call([sys.executable, "-m", "pytest", *rest])
        doc["tests"] = {"seconds": round(time.monotonic() - t0, 1), "exit_code": code, **host()}
        write_json(args.out, doc)
        raise SystemExit(code)
    method = "log clock, first to last line" if args.log else "wall clock around the stage"
    times = from_log(args.log.read_text()) if args.log else {}
    try:
        if not args.log:
            run(rest, times)
    finally:
        if times:
            where = host()
            doc["stages"].update({s: {"seconds": t, "method": method, **where} for s, t in times.items()})
            doc["stages"] = dict(sorted(doc["stages"].items()))
            write_json(args.out, doc)


if __name__ == "__main__":
    run_main(main)
