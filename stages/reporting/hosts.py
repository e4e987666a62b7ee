"""The host axis of the report: every machine's benchmarks side by side.

Benchmarks are filed per host (metrics/<family>/bench/<host>/, the `host` param); accuracy,
sizes and builds are the same on every machine. The report's main tables use this run's host;
this table puts every host's speed in one column each, never on one axis."""
from __future__ import annotations

import json
from pathlib import Path

from stages.core.errors import PipelineError
from stages.meters.host import identity

FAMILIES = ("lm", "detector")


def bench_host(bench: Path, host: str | None) -> Path:
    """The folder of one host's benchmarks below `bench` (metrics/<family>/bench); None: the
    only one there."""
    if host is None:
        hosts = sorted(p.name for p in bench.iterdir() if p.is_dir()) if bench.is_dir() else []
        if len(hosts) != 1:
            raise PipelineError(f"{bench}: {len(hosts)} host folders ({', '.join(hosts)}); name one")
        host = hosts[0]
    return bench / host


def _docs(folder: Path) -> dict[str, dict]:
    return {p.relative_to(folder).with_suffix("").as_posix(): json.loads(p.read_text())
            for p in sorted(folder.rglob("*.json"))}


def collect(metrics: Path) -> dict[str, dict]:
    """{host: {"machine": (cpu, cores), "lm": {key: bench}, "detector": {variant: bench}}}; one
    line when a host's files come from two machines (a host name is one machine)."""
    hosts: dict[str, dict] = {}
    for family in FAMILIES:
        bench = metrics / family / "bench"
        for folder in sorted(p for p in bench.iterdir() if p.is_dir()) if bench.is_dir() else []:
            h = hosts.setdefault(folder.name, {"machine": None, **{f: {} for f in FAMILIES}})
            for key, doc in _docs(folder).items():
                ident = identity(doc.get("machine") or {})
                if h["machine"] not in (None, ident):
                    raise PipelineError(f"host {folder.name!r} holds timings of two machines ({h['machine'][0]} "
                                        f"x{h['machine'][1]} and {ident[0]} x{ident[1]}, {folder / key}.json): "
                                        "give each machine its own host name")
                h["machine"], h[family][key] = ident, doc
    return hosts


def section(hosts: dict[str, dict], lm_keys: list[str], det_variants: list[str]) -> list[str]:
    """The report's "Speed per host" section (empty with one host): LM decode tokens/s and TTFT,
    detector median invoke latency, one column per host."""
    if len(hosts) < 2:
        return []
    names = sorted(hosts)
    head = "| variant | " + " | ".join(f"{n} ({hosts[n]['machine'][0]}, {hosts[n]['machine'][1]} cores)"
                                       for n in names) + " |"
    rule = "|---" + "|---:" * len(names) + "|"

    def lm_cell(doc):
        return f"{doc['decode_tokens_per_s']:.1f} tok/s · {doc['ttft_ms']:.0f} ms" if doc else "–"

    def det_cell(doc):
        return f"{doc['latency_ms_median']:.1f} ms" if doc else "–"

    out = ["## Speed per host", "",
           f"Each column is one machine's benchmarks (`host`: {', '.join(names)}), of the same built "
           "variants (accuracy does not depend on the host). Language models: decode tokens/s and "
           "time to first token at batch 1; detector: median invoke latency. Missing: not timed there.", "",
           head, rule]
    out += [f"| {k} | " + " | ".join(lm_cell(hosts[n]["lm"].get(k)) for n in names) + " |" for k in lm_keys]
    out += [f"| detector {v} | " + " | ".join(det_cell(hosts[n]["detector"].get(v)) for n in names) + " |"
            for v in det_variants]
    return out + [""]


def summary(hosts: dict[str, dict]) -> dict:
    """summary.json's `hosts`: each host's machine and how many variants it timed."""
    return {n: {"cpu": h["machine"][0], "cores": h["machine"][1], "lm_timed": len(h["lm"]),
                "detector_timed": len(h["detector"])} for n, h in sorted(hosts.items())}
