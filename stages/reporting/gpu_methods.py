"""The GPU results set's int4-by-method table (metrics/gpu/methods/: AWQ from lm_chain, RTN
from lm_rtn, on CUDA), beside GPTQ's row of the pipeline's own CUDA run."""
from __future__ import annotations

from pathlib import Path

from stages.core.errors import PipelineError
from stages.schema import metrics as M

METHOD_NOTE = ("int4 by method on CUDA, all 5,153 official LAMBADA examples, group size 64: GPTQ and "
               "AWQ on the same 128 calibration passages, RTN on none. GPTQ's row is the 12-02 run "
               "(eval_gptq.json, quantize.json); AWQ (lm_chain, method awq) and RTN (lm_rtn) are "
               "methods/, 12-03. That AWQ run predates the 12-05 workaround of GPTQModel 7.6 searching "
               "on the last calibration passage only (README \"AWQ\"). The kernel differs by run; "
               "the fp16 kernels agree to rounding.")


def methods(folder: Path) -> dict:
    """int4 by method on CUDA (methods/: eval_<m>.json from lm_eval, <m>.json from lm_rtn or
    lm_chain): {method: eval row + compress time and NVML J}."""
    out = {}
    for f in sorted(folder.glob("eval_*.json")):
        m = f.stem[len("eval_"):]
        ev = M.read(f, M.LmEvalFile).model_dump()["int4"]
        cost = folder / f"{m}.json"
        if not cost.is_file():
            raise PipelineError(f"{f} has no cost file {cost.name} beside it")
        c = M.read(cost, M.LmChain).model_dump() if m != "rtn" else \
            M.read(cost, M.LmQuantizeFile).model_dump()["int4"]
        out[m] = ev | {"compress_s": c.get("compress_time_s", c.get("quant_time_s")),
                       "compress_j": c["compress_energy"]["joules"]}
    return out


def method_table(gpu: dict) -> list[str]:
    """GPTQ (eval_gptq.json's int4, quantize.json) beside the other int4 methods."""
    rows = dict(gpu["methods"])
    if "int4" in gpu["evals"] and "int4" in gpu["quant"]:
        q = gpu["quant"]["int4"]
        rows = {"gptq": gpu["evals"]["int4"] | {"compress_s": q["quant_time_s"],
                                                "compress_j": q["compress_energy"]["joules"]}} | rows
    out = ["| int4 method | kernels | acc [95% CI] | ppl | top-k acc | compress s | compress J (NVML) |",
           "|---" * 7 + "|"]
    for m, e in rows.items():
        lo, hi = e["acc_ci95"]
        out.append(f"| {m} | {', '.join(e['kernels'])} | {e['acc']:.4f} [{lo:.4f}, {hi:.4f}] | "
                   f"{e['ppl']:.1f} | {e['topk_acc']:.4f} | {e['compress_s']:.0f} | {e['compress_j']:,.0f} |")
    return out
