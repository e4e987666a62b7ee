"""Speed, peak memory and energy of one built variant on this machine: a benchmark, not a test.

One latency meter times every runtime through its Session (stages/meters/lm_latency.py): TTFT,
TPOT median and p90, end-to-end and prefill rates, batch 1, greedy, medians over
bench_lm.speed_repeats after a warm-up, with energy per token. The variant runs in a fresh
process, so its peak RSS is its own (load + time). The read bandwidth on a working set of one
decode step's weight bytes, at the benchmark's threads, is measured in the same run, for the
bound a decode step cannot beat (stages/meters/bandwidth.py).
A quant sweep folder (int<bits>/ subfolders) is timed width by width: <out>/int<bits>.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import run_main, timed
from stages.core.files import atomic_path, dir_size_mb, require_dir, write_json
from stages.datasets.lambada import read_texts
from stages.meters import bandwidth, energy as E, fresh_process, host as H
from stages.meters.lm_latency import measure
from stages.meters.machine import record as machine
from stages.models import lm_record
from stages.schema.common import Energy
from stages.schema.host import HostName
from stages.schema.load import load_sections
from stages.schema.lm_protocol import BenchLm

PARAMS = ("host", "bench_lm") + E.PARAMS
STREAM_TEXTS = 200   # evaluation texts joined into the token stream the prompts are cut from


def timing(folder: str, ids: list[int], cfg: dict, energy: dict) -> dict:
    """In the fresh process: open the variant and time it (the meter opens here, so `estimate`
    counts this process's CPU time)."""
    from stages.runtimes import lm as runtimes

    rec = lm_record.read(Path(folder))
    session = runtimes.get(rec["runtime"]).open(Path(folder), cfg["threads"], rec["knobs"], full_logits=False)
    return measure(session, ids, cfg["prefill_tokens"], cfg["decode_tokens"], cfg["speed_repeats"],
                   E.open_meter(energy))


def bench(build: Path, text: str, cfg: dict, energy: dict, host: str) -> dict:
    """One artifact timed in a fresh process, with its bandwidth bound."""
    from stages.runtimes import lm as runtimes
    from stages.runtimes.lm.base import tokenizer

    record = lm_record.read(build)
    rt = runtimes.get(record["runtime"])
    rt.require()
    ids = tokenizer(build)(text, add_special_tokens=False)["input_ids"]   # before any timer
    with timed(f"timing {lm_record.name(record)}"):
        speed = fresh_process.run(timing, str(build), ids, cfg, energy)
    per_token = rt.weight_bytes_per_token(build)
    with timed(f"read bandwidth on {per_token / 1e6:.0f} MB at {cfg['threads']} threads"):
        bw = bandwidth.read_gb_s(per_token, cfg["threads"])
    return {"record": record, "threads": cfg["threads"], **speed, "size_mb": round(dir_size_mb(build), 2),
            "weight_bytes_per_token": per_token, "bandwidth_gb_s": bw,
            "bandwidth_fraction": bandwidth.fraction(speed["decode_tokens_per_s"], bw, per_token),
            "machine": machine(), "host": host}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--build", "--data", "--out"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_sections(args.params, PARAMS, {"host": HostName, "bench_lm": BenchLm, "energy": Energy})
    cfg = p["bench_lm"]
    H.check(args.out.parent, p["host"], machine())   # another machine's host name: before timing
    E.open_meter(p["energy"]).close()   # a bad energy param or a missing counter: before any timing
    require_dir(args.build, "built variant folder")
    units = lm_record.units(args.build)
    text = "\n\n".join(read_texts(args.data, 0)[:STREAM_TEXTS])
    if units[0][0] == "":
        return write_json(args.out, bench(args.build, text, cfg, p["energy"], p["host"]))
    with atomic_path(args.out) as out:   # a quant sweep: <out>/int<bits>.json each
        out.mkdir()
        for name, build in units:
            write_json(out / f"{name}.json", bench(build, text, cfg, p["energy"], p["host"]))


if __name__ == "__main__":
    run_main(main)
