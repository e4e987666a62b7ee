"""Hand-made metric files of exactly the shape the stages write (built through the same
pydantic schemas), and a full valid params dict."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from stages.schema import metrics as M
from stages.schema.params_methods import QUANTIZED
from stages.schema.variants import split_variant

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
MACHINE = {"cpu": "Test CPU 9000", "logical_cores": 2, "usable_cores": 2, "os": "Linux",
           "python": "3.11.7", "libraries": {"torch": "2.13.0", "dvc": "3.67.1"}}
DET = {  # variant: (size_mb, latency median ms, agreement mAP, AP with ground truth)
    "float32": (16.7, 31.0, 1.0, 0.215), "float16": (8.4, 33.5, 0.981, 0.214),
    "int8": (4.7, 19.2, 0.803, 0.192),
    "onnxruntime-float32": (16.8, 28.0, 0.995, 0.2149), "onnxruntime-int8": (4.4, 17.0, 0.93, 0.205),
    "openvino-float32": (16.8, 25.0, 0.996, 0.2151), "openvino-int8": (4.5, 12.5, 0.95, 0.207),
    "dynamic_int8": (4.9, 40.0, 0.97, 0.211), "int16x8": (4.8, 900.0, 0.99, 0.214)}
LLM = {  # variant: (size_mb, acc, decode tokens/s)
    "base": (538.1, 0.352, 38.2), "int8": (181.4, 0.350, 11.9), "int4": (112.6, 0.322, 12.6),
    "int2": (78.3, 0.014, 12.9), "rtn-int8": (181.4, 0.348, 11.8), "rtn-int4": (112.6, 0.25, 12.6),
    "rtn-int2": (78.3, 0.0, 12.8),
    # chain nodes (params.yaml `chains`): pruned models are dense on disk, as lm_chain writes them
    "prune": (541.6, 0.20, 38.0), "prune24": (541.6, 0.08, 38.1), "distill": (330.0, 0.02, 70.0),
    "prune+distill": (541.6, 0.27, 38.0), "prune+gptq-int4": (112.6, 0.17, 12.6),
    "awq-int4": (117.5, 0.41, 16.6)}
CHAIN = {"prune": ("prune", 0.5, 20.0), "prune24": ("prune", 0.5, 21.0),  # step, sparsity, joules
         "distill": ("distill", 0.0, 300.0), "prune+distill": ("distill", 0.5, 500.0),
         "prune+gptq": ("gptq", 0.5, 640.0), "awq": ("awq", 0.0, 900.0)}


def bits_of(variant: str) -> int:
    """int4, rtn-int4, prune+gptq-int4 -> 4; base and float chain nodes -> 32."""
    found = re.search(r"(?:^|-)int(\d+)$", variant)
    return int(found.group(1)) if found else 32


def energy(j_per_unit: float, unit: str, units: float = 10.0, method: str = "estimate",
           idle_w: float = 0.0) -> M.Energy:
    """An energy figure as stages/meters/energy.py writes it (one window per unit)."""
    return M.Energy(method=method, basis="process CPU time x 4 W per core (test)", unit=unit,
                    windows=5, units=units, joules=j_per_unit * units, seconds=units * 0.05,
                    power_w=j_per_unit / 0.05, idle_power_w=idle_w, j_per_unit=j_per_unit,
                    j_per_unit_p10=j_per_unit * 0.9, j_per_unit_p90=j_per_unit * 1.1,
                    net_j_per_unit=j_per_unit - idle_w * 0.05)


def ci(v: float, half: float = 0.02) -> tuple[float, float]:
    return (round(v - half, 4), round(v + half, 4))


def det_eval(variant: str, ground_truth: bool) -> M.DetEval:
    ap = DET[variant][3]
    aps = {key: (ap * f if ground_truth else None) for key, f in (
        ("AP", 1), ("AP50", 1.6), ("AP75", 1.0), ("AP_small", 0.1), ("AP_medium", 0.7),
        ("AP_large", 2.0), ("AR100", 1.2))}
    cis = {"AP_ci95": ci(ap), "AP50_ci95": ci(ap * 1.6)} if ground_truth else {}
    runtime, precision = split_variant(variant)
    return M.DetEval(runtime=runtime, precision=precision, has_ground_truth=ground_truth,
                     num_images=50 if ground_truth else 20, num_detections=900, **aps, **cis)


def det_bench(variant: str) -> M.DetBench:
    size, lat, _, _ = DET[variant]
    runtime, precision = split_variant(variant)
    return M.DetBench(runtime=runtime, precision=precision, threads=2, latency_ms_median=lat,
                      latency_ms_p90=lat * 1.12, invoke_per_s=1000 / lat, images_per_s=800 / lat,
                      e2e_over_invoke=0.8, size_mb=size, peak_rss_mb=300 + size, num_images=20,
                      energy_invoke=energy(lat * 8e-3, "image", 50),
                      energy_e2e=energy(lat * 1e-2, "image", 20), machine=MACHINE)


def det_convert(variant: str) -> M.DetConvert:
    return M.DetConvert(precision=variant, convert_time_s=12.0, size_mb=DET[variant][0],
                        compress_energy=energy({"int8": 400.0}.get(variant, 100.0), "run", 1))


def lm_eval(variant: str) -> M.LmEval:
    size, acc, _ = LLM[variant]
    return M.LmEval(bits=32 if variant == "base" else bits_of(variant), acc=acc,
                    acc_stderr=0.02, acc_ci95=ci(acc), topk_acc=min(1, acc * 1.9),
                    topk_acc_ci95=ci(min(1, acc * 1.9)), topk_word_acc=min(1, acc * 1.5),
                    topk_word_acc_ci95=ci(min(1, acc * 1.5)), ppl=18.0 / max(acc, 0.01),
                    ppl_ci95=ci(18.0 / max(acc, 0.01), 2.0), k=5, num_examples=500,
                    size_mb=size, param_mb=size * 0.98, kernels={"Linear": 211},
                    energy_eval=energy(0.8, "example", 500))


def lm_bench(variant: str) -> M.LmBench:
    decode = LLM[variant][2]
    return M.LmBench(device="cpu", threads=2, decode_tokens_per_s=decode,
                     prefill_tokens_per_s=decode * 20, eval_examples_per_s=decode / 3,
                     kernels={"Linear": 211} if bits_of(variant) == 32 else
                     {"Linear": 1, "TorchLinear": 210}, machine=MACHINE,
                     energy_decode=energy(0.5 / decode, "token", 64),
                     energy_prefill=energy(0.025 / decode, "token", 256),
                     sweep={} if bits_of(variant) == 32 else {
                         "gptq_torch": {"decode_tokens_per_s": decode, "prefill_tokens_per_s": decode * 20},
                         "gptq_torch_aten": {"unsupported": "runs [4] bits on ['cpu']"}})


ORT = {"fp32": (540.0, 0.35, 40.0), "int8": (270.0, 0.35, 88.0), "int4": (90.0, 0.30, 150.0)}


def ort_rows(variant: str, bits=(8, 4, 2)) -> tuple[M.LmRtEvalFile, M.LmRtBenchFile, M.LmRtBuildFile]:
    """lm_eval_ort + lm_bench_ort + lm_build_ort files of one lm_runtimes variant (ort-gptq:
    one row per width)."""
    prec = variant.removeprefix("ort-")
    names = [f"{variant}-int{b}" for b in bits] if prec == "gptq" else [variant]
    ev, be, build = {}, {}, {}
    for n in names:
        b = 32 if prec == "fp32" else int(n.rsplit("int", 1)[1])
        size, acc, dec = ORT.get(prec) or (80.0 + 10 * b, 0.33, 140.0)
        method = "none" if prec == "fp32" else "gptq" if prec == "gptq" else variant
        head = dict(runtime="onnxruntime", method=method, bits=b)
        ev[n] = M.LmRtEval(**head, acc=acc, acc_ci95=ci(acc), topk_acc=0.7, topk_word_acc=0.6,
                           ppl=17.0, ppl_ci95=ci(17.0, 2.0), k=5, num_examples=100,
                           size_mb=size, threads=2, versions={"onnxruntime": "1.31.1"},
                           energy_eval=energy(40.0 / dec, "example", 100))
        build[n] = M.LmRtBuild(build_time_s=30.0, size_mb=size, compress_energy=energy(120.0, "run", 1))
        be[n] = M.LmRtBench(**head, threads=2, decode_tokens_per_s=dec, prefill_tokens_per_s=dec * 5,
                            size_mb=size, peak_rss_mb=size * 2, weight_bytes_per_token=int(size * 1e6),
                            bandwidth_gb_s=10.0, bandwidth_fraction=dec / (1e10 / (size * 1e6)),
                            energy_decode=energy(0.5 / dec, "token", 64),
                            energy_prefill=energy(0.1 / dec, "token", 256),
                            versions={"onnxruntime": "1.31.1"}, machine=MACHINE)
    return M.LmRtEvalFile(ev), M.LmRtBenchFile(be), M.LmRtBuildFile(build)


GGUF = {"f32": (540.0, 0.35, 30.0, 32), "f16": (270.0, 0.35, 55.0, 16), "q8_0": (145.0, 0.35, 100.0, 8),
        "q4_0": (85.0, 0.30, 140.0, 4), "q4_k_m": (105.0, 0.32, 130.0, 4), "packaged": (90.0, 0.31, 130.0, 4)}


OV = {"fp32": (540.0, 0.35, 35.0, 32), "int8": (213.0, 0.35, 60.0, 8), "int4": (168.0, 0.33, 70.0, 4)}


def gguf_rows(kind: str, runtime: str = "llama.cpp") -> tuple[M.LmRtEvalFile, M.LmRtBenchFile, M.LmRtBuildFile]:
    """lm_eval_gguf + lm_bench_gguf + lm_build_gguf files of one llamacpp variant (runtime
    "openvino": lm_*_ov files of one ov variant)."""
    size, acc, dec, b = (GGUF if runtime == "llama.cpp" else OV)[kind]
    name = f"llamacpp-{kind}" if runtime == "llama.cpp" else f"ov-{kind}"
    method = (f"gguf-{kind}".replace("packaged", "q4_1") if runtime == "llama.cpp" else f"nncf-{kind}")
    head = dict(runtime=runtime, method="none" if b >= 16 else method, bits=b)
    ev = M.LmRtEval(**head, acc=acc, acc_ci95=ci(acc), topk_acc=0.7, topk_word_acc=0.6, ppl=17.0,
                    ppl_ci95=ci(17.0, 2.0), k=5, num_examples=100, size_mb=size, threads=2,
                    versions={"llama-cpp-python": "0.3.36"}, energy_eval=energy(30.0 / dec, "example", 100))
    build = M.LmRtBuild(build_time_s=10.0, size_mb=size, compress_energy=energy(40.0, "run", 1),
                        tensor_types={"F32": 61, "Q4_0": 210}, head_type="Q6_K")
    be = M.LmRtBench(**head, threads=2, decode_tokens_per_s=dec, prefill_tokens_per_s=dec * 6,
                     size_mb=size, peak_rss_mb=size + 60, weight_bytes_per_token=int(size * 1e6),
                     bandwidth_gb_s=10.0, bandwidth_fraction=dec / (1e10 / (size * 1e6)),
                     energy_decode=energy(0.4 / dec, "token", 64), energy_prefill=energy(0.08 / dec, "token", 256),
                     versions={"llama-cpp-python": "0.3.36"}, machine=MACHINE)
    return M.LmRtEvalFile({name: ev}), M.LmRtBenchFile({name: be}), M.LmRtBuildFile({name: build})


def write_metrics(root: Path, ground_truth: bool = False, bits=(8, 4, 2)) -> Path:
    """metrics/{detector,llm}/... as det_eval, det_bench, det_agreement, lm_eval, lm_bench and
    lm_quantize write them."""
    for v in DET:
        M.write(root / "detector" / "eval" / f"{v}.json", det_eval(v, ground_truth))
        M.write(root / "detector" / "bench" / f"{v}.json", det_bench(v))
        M.write(root / "detector" / "convert" / f"{v}.json", det_convert(v))
    M.write(root / "detector" / "agreement.json", M.AgreementFile({
        v: M.Agreement(agreement_mAP=a, agreement_mAP_ci95=ci(min(a, 0.98)),
                       agreement_AP50=min(1, a * 1.05), agreement_AP50_ci95=ci(min(a, 0.98)))
        for v, (_, _, a, _) in DET.items()}))
    gptq = [f"int{b}" for b in bits]
    for name, prefix in (("base", None), ("gptq", ""), ("rtn", "rtn-")):
        keys = {"base": "base"} if prefix is None else {v: prefix + v for v in gptq}
        M.write(root / "llm" / "eval" / f"{name}.json", M.LmEvalFile({k: lm_eval(v) for k, v in keys.items()}))
        M.write(root / "llm" / "bench" / f"{name}.json", M.LmBenchFile({k: lm_bench(v) for k, v in keys.items()}))
    for name, seconds in (("quantize", 40.0), ("rtn", 8.0)):  # lm_quantize and lm_rtn
        M.write(root / "llm" / f"{name}.json", M.LmQuantizeFile({
            v: M.LmQuantize(bits=int(v[3:]), group_size=64, quant_time_s=seconds + int(v[3:]),
                            size_mb=LLM[v][0], compress_energy=energy(seconds * 4 * int(v[3:]), "run", 1))
            for v in gptq}))
    for node, spec in PARAMS["chains"].items():   # lm_chain, lm_eval_chain, lm_bench_chain
        step, sparsity, joules = CHAIN[node]
        v = node if spec["method"] not in QUANTIZED else f"{node}-int4"
        key = "base" if v == node else "int4"
        M.write(root / "llm" / "chain" / f"{node}.json", M.LmChain(
            method={"prune+distill": "prune+distill", "prune+gptq": "prune+gptq"}.get(node, step),
            input=spec["input"], step=step, bits=bits_of(v), sparsity=sparsity, compress_time_s=joules / 8,
            size_mb=LLM[v][0], size_sparse_mb=None if key != "base" else LLM[v][0] * (1 - sparsity * 0.6),
            compress_energy=energy(joules, "run", 1)))
        M.write(root / "llm" / "eval" / f"{node}.json", M.LmEvalFile({key: lm_eval(v)}))
        M.write(root / "llm" / "bench" / f"{node}.json", M.LmBenchFile({key: lm_bench(v)}))
    for v in PARAMS["lm_runtimes"]["variants"]:
        ev, be, build = ort_rows(v, bits)
        M.write(root / "llm" / "eval" / f"{v}.json", ev)
        M.write(root / "llm" / "bench" / f"{v}.json", be)
        M.write(root / "llm" / "build" / f"{v}.json", build)
    for kind in PARAMS["lm_runtimes"]["llamacpp"]["variants"]:
        for part, doc in zip(("eval", "bench", "build"), gguf_rows(kind)):
            M.write(root / "llm" / part / f"llamacpp-{kind}.json", doc)
    for kind in PARAMS["lm_runtimes"]["openvino"]["variants"]:
        for part, doc in zip(("eval", "bench", "build"), gguf_rows(kind, "openvino")):
            M.write(root / "llm" / part / f"ov-{kind}.json", doc)
    return root
