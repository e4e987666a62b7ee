"""Speed of one detector variant (any runtime) on this machine: a benchmark, not a test.

Bare invoke latency (network + post-processing on a fixed, already preprocessed input;
median and p90 over bench_det.latency_runs after bench_det.warmup invokes), the network's
latency alone (the same input and counts; what int8 changes: the post-processing is float on
every runtime, LiteRT's TFLite_Detection_PostProcess op or ONNX Runtime's and OpenVINO's
NumPy one, stages/models/ssd_nms.py), end-to-end
images/s over every evaluated image (JPEG decode + resize + invoke + COCO conversion,
decoding prefetched in a thread), their ratio, the model's size on disk (a folder: all its
files), the process's peak RSS (ru_maxrss) and the threads. The file records the machine
and library versions it was measured on.
"""
from __future__ import annotations

import argparse
import resource
from pathlib import Path

import numpy as np

from stages.core.errors import log, run_main, timed
from stages.meters import energy as E
from stages.meters import host as H
from stages.meters.machine import record
from stages.meters.timing import repeat_ms
from stages.runtimes.detect_images import detect_all, open_detector, prepare
from stages.schema import metrics as M
from stages.schema.common import Energy
from stages.schema.detector import BenchDet
from stages.schema.host import HostName
from stages.schema.load import load_sections

PARAMS = ("host", "bench_det") + E.PARAMS
SCHEMAS = {"host": HostName, "bench_det": BenchDet, "energy": Energy}  # validated here (check_params: the whole file)


def size_mb(model: Path) -> float:
    files = [f for f in model.rglob("*") if f.is_file()] if model.is_dir() else [model]
    return sum(f.stat().st_size for f in files) / 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--variant", "--model", "--data", "--metrics"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_sections(args.params, PARAMS, SCHEMAS)
    H.check(Path(args.metrics).parent, p["host"], record())   # another machine's host name: before timing
    cfg, meter = p["bench_det"], E.open_meter(p["energy"])  # every detector runtime runs on the CPU
    runtime, precision, det, gt, paths = open_detector(args.variant, args.model, args.data, cfg["threads"])
    x = prepare(paths[0])
    with timed(f"latency: {cfg['warmup']} warm-up + {cfg['latency_runs']} timed invokes"):
        times, e_invoke = meter.blocks(lambda: det(x), cfg["warmup"], cfg["latency_runs"], "image")
    with timed(f"network alone: {cfg['warmup']} warm-up + {cfg['latency_runs']} timed runs"):
        network = repeat_ms(lambda: det.network(x), cfg["warmup"], cfg["latency_runs"])
    with timed(f"end to end over {len(paths)} images"):
        (_, wall), e_e2e = meter.once(lambda: detect_all(det, gt["images"], paths), len(paths), "image")
    median = float(np.median(times))
    invoke_per_s, images_per_s = 1e3 / median, len(paths) / wall
    M.write(args.metrics, M.DetBench(
        runtime=runtime, precision=precision, threads=cfg["threads"],
        latency_ms_median=median, latency_ms_p90=float(np.percentile(times, 90)),
        network_ms_median=float(np.median(network)), network_ms_p90=float(np.percentile(network, 90)),
        invoke_per_s=invoke_per_s, images_per_s=images_per_s,
        e2e_over_invoke=images_per_s / invoke_per_s, size_mb=size_mb(Path(args.model)),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        num_images=len(paths), energy_invoke=e_invoke, energy_e2e=e_e2e, machine=record()))
    log.info("%s: median %.1f ms, %.1f img/s (%.2f of invoke/s); %s: %.3g J/image invoke, "
             "%.3g J/image end to end", args.variant, median, images_per_s,
             images_per_s / invoke_per_s, meter.method, e_invoke["j_per_unit"], e_e2e["j_per_unit"])


if __name__ == "__main__":
    run_main(main)
