"""Speed of a classifier variant on this machine (a benchmark, not a test): batch-1 latency
(median and p90 over classifier.bench.runs calls on one test example padded to max_len) and
throughput at classifier.bench.batch, each with its energy (method named), plus size on disk
and peak RSS, filed under the host's name with the machine and library versions."""
from __future__ import annotations

import argparse
import resource
from pathlib import Path

import numpy as np

from stages.core.errors import log, run_main, timed
from stages.core.files import write_json
from stages.datasets.cls_files import read_split
from stages.meters import energy as E
from stages.meters import host as H
from stages.meters.machine import record
from stages.runtimes import cls as runtimes
from stages.schema.classifier import Classifier
from stages.schema.common import Energy
from stages.schema.host import HostName
from stages.schema.load import load_sections

PARAMS = ("host", "classifier.variants.${key}", "classifier.max_len", "classifier.bench") + E.PARAMS
SCHEMAS = {"host": HostName, "classifier": Classifier, "energy": Energy}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", required=True)
    for flag in ("--model", "--data", "--metrics"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    keys = tuple(k.replace("${key}", args.variant) for k in PARAMS)
    p = load_sections(args.params, keys, SCHEMAS)
    H.check(args.metrics.parent, p["host"], record())   # another machine's host name: before timing
    cls, cfg = p["classifier"], p["classifier"]["bench"]
    v = cls["variants"][args.variant].plain()
    runtime = runtimes.get(v["runtime"])
    meter = E.open_meter(p["energy"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    test = [r["text"] for r in read_split(args.data, "test")]
    pad = dict(truncation=True, max_length=cls["max_len"], padding="max_length", return_tensors="np")
    one = {k: t.astype(np.int64) for k, t in tok(test[:1], **pad).items() if k in ("input_ids", "attention_mask")}
    many = {k: t.astype(np.int64) for k, t in tok((test * cfg["batch"])[:cfg["batch"]], **pad).items()
            if k in ("input_ids", "attention_mask")}
    session = runtime.open(args.model, cfg["threads"])
    with timed(f"batch 1: {cfg['warmup']} warm-up + {cfg['runs']} timed calls"):
        ms, e_one = meter.blocks(lambda: session.logits(one), cfg["warmup"], cfg["runs"], "example")
    with timed(f"batch {cfg['batch']}: throughput"):
        _, secs, e_many = meter.repeats(lambda: session.logits(many), 5, cfg["batch"], "example")
    meter.close()
    median, per_s = float(np.median(ms)), cfg["batch"] / float(np.median(secs))
    log.info("%s: batch 1 median %.2f ms, batch %d %.0f examples/s; %s: %.3g J/example (batch 1)",
             args.variant, median, cfg["batch"], per_s, meter.method, e_one["j_per_unit"])
    write_json(args.metrics, {
        **v, "threads": cfg["threads"], "tokens": cls["max_len"], "latency_ms_median": median,
        "latency_ms_p90": float(np.percentile(ms, 90)), "batch": cfg["batch"], "examples_per_s": per_s,
        "size_mb": runtime.size_mb(args.model), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "energy_batch1": e_one, "energy_batch": e_many, "machine": record(), "host": p["host"]})


if __name__ == "__main__":
    run_main(main)
