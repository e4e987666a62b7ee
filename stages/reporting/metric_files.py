"""Read the metric files of the detector and LM stages through their schemas
(stages/schema/metrics.py) into one row per variant. A missing file or variant, a missing
key or a value of the wrong type is a PipelineError naming the file and the key."""
from __future__ import annotations

from pathlib import Path

from stages.core.errors import PipelineError
from stages.meters.cpu_power import WORLD_GCO2_PER_KWH
from stages.reporting import energy as E
from stages.schema import metrics as M
from stages.schema.params_methods import QUANTIZED

DETECTOR_ORDER = ("float32", "float16", "int8", "int16x8", "dynamic_int8")  # fixed order of every table
RUNTIME_ORDER = ("onnxruntime", "openvino")


def detector_variants(precisions: list[str], runtimes: list[str] = ()) -> list[str]:
    """LiteRT's precisions, then each other runtime's variants, precisions in fixed order."""
    return [p for p in DETECTOR_ORDER if p in precisions] + [
        f"{r}-{p}" for r in RUNTIME_ORDER for p in DETECTOR_ORDER if f"{r}-{p}" in runtimes]


LLM_METHODS = {"gptq": "quantize.json", "rtn": "rtn.json"}  # method -> its compression file
PREFIXES = {"gptq": "", "rtn": "rtn-"}  # GPTQ rows keep their historical names (int4)


def llm_variants(bits: list[int], chains: dict | None = None) -> list[str]:
    """base, then each method's variants from the widest to the narrowest (GPTQ, then RTN),
    then every chain node (`prune`, or `prune+gptq-int4` for a quantizing node)."""
    widths = [f"int{b}" for b in sorted(set(bits), reverse=True)]
    nodes = [n if c["method"] not in QUANTIZED else f"{n}-int{c.get('bits') or c[c['method'] + '_bits']}"
             for n, c in (chains or {}).items()]
    return ["base"] + [PREFIXES[m] + w for m in LLM_METHODS for w in widths] + nodes


def llm_method(variant: str) -> tuple[str, str]:
    """Variant name -> (its file stem, key in that file): "rtn-int4" -> ("rtn", "int4"),
    chain nodes: "prune" -> ("prune", "base"), "prune+gptq-int4" -> ("prune+gptq", "int4")."""
    if variant == "base":
        return "none", "base"
    method, _, width = variant.rpartition("-")
    if not method and not width.startswith("int"):
        return variant, "base"       # a float chain node: one model folder
    return method or "gptq", width


def chain_cost(root: Path, node: str, read) -> tuple[dict, dict]:
    """The node's own record and its energy/time summed over the chain's steps (base excluded)."""
    own = read(root / "llm" / "chain" / f"{node}.json", M.LmChain).model_dump()
    joules = seconds = 0.0
    cur = own
    while True:
        joules, seconds = joules + cur["compress_energy"]["joules"], seconds + cur["compress_time_s"]
        if cur["input"] == "base":
            break
        cur = read(root / "llm" / "chain" / f"{cur['input']}.json", M.LmChain).model_dump()
    return own, {**own["compress_energy"], "joules": joules, "seconds": seconds}


def _entry(doc, variant: str, path: Path):
    if variant not in doc.root:
        raise PipelineError(f"{path}: missing key '{variant}'")
    return doc.root[variant]


def load_detector(root: Path, variants: list[str],
                  grid: float = WORLD_GCO2_PER_KWH) -> tuple[dict[str, dict], dict]:
    """Rows of eval + bench + convert + agreement per variant (energy and carbon at `grid`
    gCO2e/kWh), and the bench stage's machine record."""
    agree_path = root / "detector" / "agreement.json"
    agreement = M.read(agree_path, M.AgreementFile)
    rows, machine = {}, {}
    for v in variants:
        ev_path, bench_path = (root / "detector" / part / f"{v}.json" for part in ("eval", "bench"))
        row = M.read(ev_path, M.DetEval).model_dump()
        if row["has_ground_truth"] and row["AP"] is None:  # AP_small etc. may be null (-1)
            raise PipelineError(f"{ev_path}: 'AP' is null although has_ground_truth is true")
        bench = M.read(bench_path, M.DetBench).model_dump()
        machine, _ = bench.pop("machine"), bench.pop("num_images")  # same images as eval
        figs = {"energy_j_per_image": bench.pop("energy_invoke"),
                "energy_j_per_image_e2e": bench.pop("energy_e2e")}
        conv = M.read(root / "detector" / "convert" / f"{v}.json", M.DetConvert).compress_energy
        row.update(bench, **_entry(agreement, v, agree_path).model_dump(),
                   **E.fields(figs, "energy_j_per_image_e2e", conv.model_dump()))
        rows[v] = row
    return E.derive(rows, "detector", grid), machine


def load_llm(root: Path, variants: list[str],
             grid: float = WORLD_GCO2_PER_KWH) -> tuple[dict[str, dict], dict]:
    """Rows of eval + bench (+ quantize for GPTQ widths) per variant (energy and carbon at
    `grid` gCO2e/kWh), and the machine record. Each file is read once, and only when a
    listed variant needs it."""
    docs: dict[Path, object] = {}

    def read(path: Path, schema):
        if path not in docs:
            docs[path] = M.read(path, schema)
        return docs[path]

    def entry(rel: str, schema, variant: str) -> dict:
        path = root / "llm" / rel
        return _entry(read(path, schema), variant, path).model_dump()

    rows, machine = {}, {}
    for v in variants:
        method, key = llm_method(v)
        group = "base" if v == "base" else method
        row = entry(f"eval/{group}.json", M.LmEvalFile, key)
        bench = entry(f"bench/{group}.json", M.LmBenchFile, key)
        machine = bench.pop("machine")
        row["bench_cpu"] = machine.get("cpu")   # the runtime table says where each row was timed
        row["bench_kernels"] = bench.pop("kernels")
        row["kernel_sweep"] = bench.pop("sweep")
        figs = {"energy_j_per_token_decode": bench.pop("energy_decode"),
                "energy_j_per_token_prefill": bench.pop("energy_prefill"),
                "energy_j_per_example": row.pop("energy_eval")}
        row.update(bench)
        if method in LLM_METHODS or v == "base":
            q = {} if v == "base" else entry(LLM_METHODS[method], M.LmQuantizeFile, key)
            row.update(method=method, sparsity=0.0, compress_time_s=q.get("quant_time_s"),
                       group_size=q.get("group_size"), size_sparse_mb=None,
                       **E.fields(figs, "energy_j_per_token_decode", q.get("compress_energy")))
        else:
            own, cost = chain_cost(root, method, read)
            row.update(method=own["method"], sparsity=own["sparsity"], size_sparse_mb=own["size_sparse_mb"],
                       compress_time_s=round(cost["seconds"], 2), group_size=None,
                       **E.fields(figs, "energy_j_per_token_decode", cost))
        rows[v] = row
    return E.derive(rows, "llm", grid), machine
