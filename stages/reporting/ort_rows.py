"""The rows of the LM report on runtimes other than PyTorch: lm_build_* + lm_eval_* +
lm_bench_* per built variant (ONNX Runtime GenAI `ort-*`, llama.cpp `llamacpp-*`), with
compression cost (the build, plus GPTQ for ort-gptq) and break-even against the runtime's
own unquantized row."""
from __future__ import annotations

from pathlib import Path

from stages.core.errors import PipelineError
from stages.reporting import energy as EN
from stages.schema import metrics as M


def load_ort(root: Path, variants: list[str], grid: float = EN.WORLD) -> tuple[dict[str, dict], float | None]:
    """Rows of lm_build_ort + lm_eval_ort + lm_bench_ort per built variant, and the triad
    bandwidth (GB/s). Compression energy and time: the builder run, plus lm_quantize's GPTQ of
    that width for ort-gptq rows; break-even in decoded tokens against the same runtime's
    unquantized row (ort-fp32, llamacpp-f16 / -f32)."""
    rows, bw, quantize = {}, None, {}   # quantize: lm_quantize's file, read once if an ort-gptq row needs it
    for v in variants:
        paths = {part: root / "llm" / part / f"{v}.json" for part in ("build", "eval", "bench")}
        build = M.read(paths["build"], M.LmRtBuildFile).root
        ev, be = M.read(paths["eval"], M.LmRtEvalFile).root, M.read(paths["bench"], M.LmRtBenchFile).root
        if not set(ev) == set(be) == set(build):
            raise PipelineError(f"{paths['build']}, {paths['eval']} and {paths['bench']} list different "
                                f"variants: {sorted(build)}, {sorted(ev)}, {sorted(be)}")
        for name in ev:
            b, e = be[name].model_dump(), ev[name].model_dump()
            b["bench_cpu"] = b.pop("machine").get("cpu")
            b.pop("versions")
            figs = {"energy_j_per_token_decode": b.pop("energy_decode"),
                    "energy_j_per_token_prefill": b.pop("energy_prefill"),
                    "energy_j_per_example": e.pop("energy_eval")}
            compress, seconds = compress_cost(root, name, build[name], quantize)
            rows[name] = {**e, **b, **EN.fields(figs, "energy_j_per_token_decode", compress),
                          "compress_time_s": seconds, "head_type": build[name].head_type}
            bw = b["bandwidth_gb_s"]
    refs = {}   # runtime -> its widest unquantized row
    for r in sorted(rows.values(), key=lambda r: r["bits"]):
        if r["bits"] >= 16:
            refs[r["runtime"]] = r
    for name, r in rows.items():
        r["gco2e_per_1000"] = EN.grams(1000 * r["energy_j_per_token_decode"], grid)
        r["compress_gco2e"] = EN.grams(r["compress_energy_j"], grid)
        ref = refs.get(r["runtime"])
        r["break_even_inferences"] = None if ref is None or ref is r else EN.break_even(
            r["compress_energy_j"], ref["energy_j_per_token_decode"], r["energy_j_per_token_decode"])
    return rows, bw


def compress_cost(root: Path, name: str, build: M.LmRtBuild, quantize: dict) -> tuple[dict | None, float]:
    """The builder's energy figure and seconds, plus GPTQ's (lm_quantize) for ort-gptq-int<b>
    (energy None where an old quantize file has no GPTQ energy: not measured). `quantize`
    caches lm_quantize's rows across calls."""
    energy, seconds = build.compress_energy.model_dump(), build.build_time_s
    if name.startswith("ort-gptq-"):
        path = root / "llm" / "quantize.json"
        if not quantize:
            quantize.update(M.read(path, M.LmQuantizeFile).root)
        q = quantize.get(name.removeprefix("ort-gptq-"))
        if q is None:
            raise PipelineError(f"{path}: missing key '{name.removeprefix('ort-gptq-')}' ({name})")
        energy = None if q.compress_energy is None else {
            **energy, "joules": energy["joules"] + q.compress_energy.joules}
        seconds += q.quant_time_s
    return energy, round(seconds, 2)
