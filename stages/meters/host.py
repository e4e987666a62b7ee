"""The host axis: benchmarks are filed per machine name (`host` in params.yaml), so results of
several machines live side by side (metrics/<family>/bench/<host>/) and the report compares them.
`python -m stages.meters.host` prints this machine and a name for it."""
from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from stages.core.errors import PipelineError
from stages.meters.machine import record


def suggested(machine: dict) -> str:
    """A host name from the CPU and its usable cores: `amd-epyc-2c`."""
    name = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$", "", machine["cpu"].lower())
    return "-".join(re.findall(r"[a-z0-9]+", name)[:4] + [f"{machine['usable_cores']}c"])


def identity(machine: dict) -> tuple:
    """What makes two benchmark files one machine's: the CPU and the cores the process may use."""
    return machine.get("cpu"), machine.get("usable_cores")


def check(folder: Path, host: str, machine: dict) -> None:
    """One line, before any timing, when `folder` (metrics/<family>/bench/<host>) already holds
    a benchmark of another machine: a host name is one machine, or its figures would mix."""
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(ValueError, OSError):
            other = json.loads(path.read_text()).get("machine") or {}
            if identity(other) != identity(machine):
                raise PipelineError(
                    f"host {host!r} holds timings from {other.get('cpu')} x{other.get('usable_cores')} "
                    f"({path}); this machine is {machine['cpu']} x{machine['usable_cores']}: give it "
                    f"its own name (dvc exp run -S host={suggested(machine)})")


if __name__ == "__main__":
    mine = record()
    print(f"{mine['cpu']}, {mine['usable_cores']} usable cores: host name {suggested(mine)}")
