"""Why static int8 of the detector network is barely faster than float32 on this CPU: an
analysis script, not a pipeline stage (dvc.yaml does not run it, no stage reads its output).

    python -m stages.entry.det_int8_profile [--runs N] [--calib K] [--out metrics/detector/int8_profile.json]

In a temporary folder: the float32 ONNX network as det_onnx builds it (det_export's sub-graph
exported anew when models/detector/base is absent) and the int8 candidates of ORT_INT8 and
OV_INT8, calibrated on the first K images of coco_data's list (rebuilt from params when absent),
with detector.ptq's float nodes. Each network (no NMS, unlike det_bench) is opened as
stages/runtimes/ opens it, timed on one preprocessed image (one warm-up, median of N invokes)
and divided by its runtime's float32 median; N more invokes run under the runtime's profiler:
ONNX Runtime's enable_profiling (trace Node kernel time by op type as executed, i.e. after Q/DQ
fusion and layout changes, depthwise convs apart) and OpenVINO's PERF_COUNT (real_time by node
type and exec_type: jit_avx2_I8, jit_avx2_1x1_I8, brgconv_avx2_dw_f32 ...). Run it idle.

What to look for on AVX2 without VNNI or AMX (this pipeline's AMD EPYC): u8 x s8 dot products
take VPMADDUBSW + VPMADDWD + VPADDD where VNNI has one VPDPBUSD, and VPMADDUBSW's int16 pair sums
saturate (ONNX Runtime's quantization docs, "When and why do I need to try U8U8?": U8S8 on
AVX2/AVX-512 without VNNI; reduce_range or U8U8 avoid it; NNCF's overflow_fix likewise). ORT's
AVX2 U8U8 GEMM (the pipeline's choice, for accuracy) widens activations to int16 for VPMADDWD.
MobileNet v2 is mostly depthwise 3x3 and narrow 1x1 convs (little arithmetic per byte); Q/DQ
where int8 stops and layout reorders cost time float32 does not. Accuracy: det_agreement.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info logs off

import numpy as np

from stages.core.errors import PipelineError, log, run_main, timed
from stages.core.files import dir_size_mb, write_json
from stages.datasets.coco import image_paths, read_manifest, source_module
from stages.meters.machine import record
from stages.meters.timing import repeat_ms
from stages.methods import onnx_ptq
from stages.models import ssd_graph as G, ssd_mobilenet_v2 as ssd
from stages.runtimes.network_only import require
from stages.schema.detector import BenchDet, Coco, Detector, Seed
from stages.schema.load import load_sections

PARAMS = ("seed", "coco", "detector.source", "detector.calib_size", "detector.ptq",
          "bench_det.threads", "bench_det.latency_runs")
SCHEMAS = {"seed": Seed, "coco": Coco, "detector": Detector, "bench_det": BenchDet}
ISA = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
LIBRARIES = ("onnxruntime", "openvino", "nncf", "onnx", "tf2onnx")
# ONNX Runtime: (format, activations, weights, reduce_range), per-channel. ort_int8 hard-codes QDQ
# u8/u8, so the others call quantize_static as it does (same file, inputs, excluded nodes).
ORT_INT8 = {"onnxruntime-int8": None,                                   # ort_int8 itself: the pipeline's
            "onnxruntime-int8-qdq-u8s8": ("QDQ", "QUInt8", "QInt8", False),      # ORT's x86 kernels' pairing
            "onnxruntime-int8-qdq-u8s8-rr": ("QDQ", "QUInt8", "QInt8", True),    # 7-bit weights
            "onnxruntime-int8-qop-u8s8": ("QOperator", "QUInt8", "QInt8", False),  # QLinearConv in the file
            "onnxruntime-int8-qdq-s8s8": ("QDQ", "QInt8", "QInt8", False)}       # quantize_static's default
# OpenVINO: onnx_ptq.openvino_ir (NNCF) with detector.ptq, and with 8-bit weights (overflow fix off)
OV_INT8 = {"openvino-int8": {}, "openvino-int8-nofix": {"overflow_fix": "disable"}}


def calibration(manifest: Path, p, k: int | None, tmp: Path) -> tuple[list[Path], str]:
    """The first k images of coco_data's calibration list, or of the same seeded list rebuilt
    into tmp from params' coco section when coco_data has not run."""
    if manifest.is_file():
        calib, where = read_manifest(manifest, "calibration list"), str(manifest)
    else:
        where = f"coco.source={p['coco']['source']}, rebuilt"
        with timed(f"calibration list of {where} ({manifest} is absent)"):
            _, calib = source_module(p["coco"]["source"]).build(
                p["coco"], 1, p["detector"]["calib_size"], p["seed"], tmp, tmp)
    return image_paths(calib, where)[:k], where   # fewer when the list is shorter (recorded)


def exported_base(base: Path, source: str, tmp: Path) -> Path:
    """models/detector/base when det_export has run, else raw_graph.pb as det_export writes it."""
    if (base / "raw_graph.pb").is_file():
        return base
    import tensorflow as tf
    with timed(f"det_export's raw sub-graph ({base} is absent)"):
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(G.graph_path(source).read_bytes())
        G.check_graph(graph_def)
        raw, _ = G.split_graph(graph_def)
    (tmp / "raw_graph.pb").write_bytes(raw.SerializeToString(deterministic=True))
    return tmp


def build(onnx_file: Path, calib: list[Path], tmp: Path, ptq: dict) -> dict[str, Path]:
    """Every candidate's model file, each runtime's float32 first."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):   # as ort_int8's: the evaluation preprocessing
        def __init__(self):
            self._it = ({onnx_ptq.INPUT: x} for x in onnx_ptq.samples(calib))

        def get_next(self):
            return next(self._it, None)

    pre = tmp / "pre.onnx"
    quant_pre_process(str(onnx_file), str(pre), skip_symbolic_shape=True)   # as ort_int8
    excluded = list(onnx_ptq.OUTPUT_CONCATS) + (onnx_ptq.box_head_nodes(pre) if ptq["float_box_head"] else [])
    models = {"onnxruntime-float32": onnx_file}
    for name, spec in ORT_INT8.items():
        models[name] = out = tmp / f"{name}.onnx"
        with timed(f"build {name} ({len(calib)} calibration images)"):
            if spec is None:
                onnx_ptq.ort_int8(onnx_file, calib, out, ptq["float_box_head"])
            else:
                fmt, act, weight, reduce_range = spec
                quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat[fmt],
                                per_channel=True, reduce_range=reduce_range, nodes_to_exclude=excluded,
                                activation_type=QuantType[act], weight_type=QuantType[weight])
    for name, change in {"openvino-float32": None, **OV_INT8}.items():
        (tmp / name).mkdir()
        with timed(f"build {name}"):
            onnx_ptq.openvino_ir(onnx_file, "float32" if change is None else "int8", calib, tmp / name,
                                 {**ptq, **(change or {})})
        models[name] = tmp / name / "model.xml"
    return models


def summarize(times: list[float], rows: list[tuple[str, str, str, float]], runs: int) -> dict:
    """The median of the timed invokes; (op type, kind, backend, ms) of every node executed in
    `runs` profiled invokes -> ms per invoke by each."""
    total = sum(r[3] for r in rows) / runs
    out = {"median_ms": round(statistics.median(times), 3), "profiled_ms": round(total, 3)}
    for i, key in enumerate(("by_op_type", "by_kind", "by_backend")):
        acc = defaultdict(lambda: [0.0, 0])
        for r in rows:
            acc[r[i]][0] += r[3] / runs
            acc[r[i]][1] += 1
        out[key] = [{"name": k, "ms": round(ms, 4), "share": round(ms / total, 4), "nodes": n // runs}
                    for k, (ms, n) in sorted(acc.items(), key=lambda kv: -kv[1][0])]
    return out


def ort_measure(model: Path, threads: int, x: np.ndarray, runs: int, trace: Path):
    """Timed invokes (profiler off), then the trace's Node kernel time by op type as executed,
    kind (depthwise convs apart: `group` of the optimized graph, whose weights the trace may not
    show once prepacked) and provider, the warm-up left out."""
    import onnx
    import onnxruntime as ort
    sessions = []
    for profile in (False, True):   # opened as stages/runtimes/onnxruntime.py opens it
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode, opts.log_severity_level = ort.ExecutionMode.ORT_SEQUENTIAL, 3
        opts.enable_profiling, opts.profile_file_prefix = profile, str(trace)
        opts.optimized_model_filepath = str(trace.with_suffix(".optimized.onnx")) if profile else ""
        sessions.append(ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"]))
    times = repeat_ms(lambda: sessions[0].run(None, {onnx_ptq.INPUT: x}), 1, runs)
    for _ in range(runs + 1):
        sessions[1].run(None, {onnx_ptq.INPUT: x})
    events = json.loads(Path(sessions[1].end_profiling()).read_text())
    graph = onnx.load(str(trace.with_suffix(".optimized.onnx"))).graph
    groups = {n.name: max([a.i for a in n.attribute if a.name == "group"], default=1) for n in graph.node}
    warm = min((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    rows = []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] > warm["ts"] + warm["dur"]:
            op, dw = e["args"]["op_name"], groups.get(e["name"].removesuffix("_kernel_time"), 1) > 1
            rows.append((op, f"{op} depthwise" if dw else op, e["args"].get("provider", "?"), e["dur"] / 1e3))
    return summarize(times, rows, runs)


def ov_measure(model: Path, threads: int, x: np.ndarray, runs: int):
    """Timed invokes (PERF_COUNT off), then real_time of executed nodes by node type,
    node type [exec_type] and exec_type."""
    import openvino as ov
    core = ov.Core()
    request, profiled = (core.compile_model(core.read_model(str(model)), "CPU", {  # as runtimes/openvino.py
        "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1, "PERF_COUNT": perf}).create_infer_request() for perf in (False, True))
    times = repeat_ms(lambda: request.infer({0: x}), 1, runs)
    profiled.infer({0: x})  # warm-up
    rows = []
    for _ in range(runs):
        profiled.infer({0: x})
        rows += [(i.node_type, f"{i.node_type} [{i.exec_type}]", i.exec_type, i.real_time.total_seconds() * 1e3)
                 for i in profiled.get_profiling_info() if i.status == ov.ProfilingInfo.Status.EXECUTED]
    return summarize(times, rows, runs)


def host() -> dict:
    """meters.machine.record() plus the int8-relevant ISA flags and the runtimes' versions."""
    import openvino as ov
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    flags = set(next((ln for ln in cpuinfo if ln.startswith("flags")), "").partition(":")[2].split())
    machine = record()
    machine["libraries"].update({name: importlib.metadata.version(name) for name in LIBRARIES})  # all required
    machine["isa"] = {f: f in flags for f in ISA}
    machine["openvino_cpu_capabilities"] = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return machine


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, help="timed and profiled invokes each (default bench_det.latency_runs)")
    ap.add_argument("--calib", type=int, help="calibration images, the list's first K (default all)")
    ap.add_argument("--out", default="metrics/detector/int8_profile.json")
    ap.add_argument("--base", default="models/detector/base", help="det_export's output, if any")
    ap.add_argument("--calib-list", default="data/coco/calib.json", help="coco_data's list, if any")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_sections(args.params, PARAMS, SCHEMAS)
    runs, threads = args.runs or p["bench_det"]["latency_runs"], p["bench_det"]["threads"]
    if runs < 1 or (args.calib is not None and args.calib < 1):
        raise PipelineError("--runs and --calib must be at least 1")
    for module in ("onnx", "tf2onnx", "onnxruntime", "openvino", "nncf"):
        require(module)
    ptq = dict(p["detector"]["ptq"])
    with tempfile.TemporaryDirectory(prefix="det_int8_profile.") as work:
        tmp = Path(work)
        calib, calib_from = calibration(Path(args.calib_list), p, args.calib, tmp)
        base = exported_base(Path(args.base), p["detector"]["source"], tmp)
        with timed("tf2onnx conversion of the network (det_onnx)"):
            (onnx_file := tmp / "network.onnx").write_bytes(onnx_ptq.to_onnx(base))
        x = ssd.preprocess(ssd.load_image(calib[0]))
        results = []
        for name, model in build(onnx_file, calib, tmp, ptq).items():
            with timed(f"{name}: 1 warm-up + {runs} timed invokes, then {runs} profiled"):
                ort = name.startswith("onnxruntime")
                measured = ort_measure(model, threads, x, runs, tmp / f"{name}.trace") if ort \
                    else ov_measure(model, threads, x, runs)
            size = round(dir_size_mb(model if ort else model.parent), 2)
            results.append({"candidate": name, "runtime": name.split("-")[0], "size_mb": size, **measured})
    floats = {r["runtime"]: r["median_ms"] for r in results if r["candidate"].endswith("float32")}
    for r in results:
        r["ratio_to_float32"] = round(r["median_ms"] / floats[r["runtime"]], 3)
    write_json(args.out, {
        "what": "detector network (no NMS): latency and per-op profile, float32 and int8 candidates",
        "runs": runs, "threads": threads, "calibration": {"images": len(calib), "list": calib_from},
        "ptq": ptq, "host": host(), "candidates": results})
    print("\n| candidate | median ms | x float32 | top 3 op kinds (share of profiled time) |")
    print("|---|---:|---:|---|")
    for r in results:
        top = ", ".join(f"{k['name']} {k['share']:.0%}" for k in r["by_kind"][:3])
        print(f"| {r['candidate']} | {r['median_ms']:.1f} | {r['ratio_to_float32']:.2f} | {top} |")
    log.info("wrote %s (%d candidates, %d runs each, %d calibration images)", args.out, len(results), runs,
             len(calib))


if __name__ == "__main__":
    run_main(main)
