"""One node of a compression chain (params `chains`): the node's method applied to its input
node's model (stages/methods/{prune,distill,gptq,awq}.py), written to models/llm/<node>.

prune / distill write a dense float32 model folder (pruned zeros stay zeros through the
recovery fine-tuning); gptq and awq write <out>/int<bits>/, as lm_quantize does. Each step is
metered; its metrics say what it cost and what it left (sparsity, sizes, training loss).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import PipelineError, run_main, timed
from stages.core.files import atomic_path, dir_size_mb, require_dir
from stages.core.numerics import pin_cpu_numerics
from stages.datasets.lambada import read_jsonl
from stages.entry.lm_quantize import read_calibration
from stages.meters import energy as E
from stages.methods import distill as D, prune as PR
from stages.runtimes import torch_lm as R
from stages.schema import metrics as M, params as P
from stages.schema.params_methods import QUANTIZED, steps

# dvc.yaml's params of lm_chain, per node: the node, its method's section, GPTQ's other knobs
PARAMS = ("seed", "chains.${key}", "${item.method}", "quant.group_size", "quant.calib_size",
          "quant.calib_seq_len", "quant.damp_percent", "quant.desc_act", "quant.device",
          "quant.threads") + E.PARAMS
QUANT = tuple(k for k in PARAMS if k.startswith("quant."))


def keys(node: str, method: str) -> tuple[str, ...]:
    """The params one node reads (PARAMS resolved; GPTQ's knobs only for a gptq node)."""
    own = (f"chains.{node}", method) + (("seed",) if method != "prune" else ()) \
        + (QUANT if method in QUANTIZED else ())
    return own + E.PARAMS


def load(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if "quantization_config" in (folder / "config.json").read_text():
        raise PipelineError(f"{folder} is quantized: prune and distill need float weights")
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), \
        AutoTokenizer.from_pretrained(folder)


def dense_step(node: str, method: str, p, args, tmp: Path, pruned: bool) -> dict:
    """prune or distill the input model into tmp (pruned: a prune step came before, so its
    zeros are kept); returns the step's own metrics."""
    model, tok = load(args.input)
    out: dict = {}
    if method == "prune":
        sparsity, pattern = p["prune"]["sparsity"], p["prune"]["pattern"]
        pattern = p["chains"][node].get("pattern") or pattern   # the node's own, if it sets one
        PR.check(model, pattern)   # 2:4 on a width not divisible by 4: before any work
        out["pattern"] = pattern
        PR.prune(model, 0.5 if pattern == "2:4" else sparsity, pattern)
    else:
        cfg = p["distill"]
        teacher, _ = load(args.teacher)
        from_base = p["chains"][node]["input"] == "base"   # a copy of the teacher: make it smaller
        student = (D.drop_layers(model, cfg["drop_every"]) if from_base else model).to(cfg["device"])
        masks = PR.masks(student) if pruned else None
        texts = [r["text"] for r in read_jsonl(args.calib, "calibration file")]  # never evaluated
        data = D.windows(tok, texts, cfg["seq_len"])
        losses = D.train(student, teacher.to(cfg["device"]), data, cfg, p["seed"], masks)
        out.update(losses=losses, layers=student.config.num_hidden_layers, device=cfg["device"],
                   tokens_trained=cfg["steps"] * cfg["batch_size"] * cfg["seq_len"])
        model = student.cpu()
    model.config.name_or_path = f"SmolLM2-135M-{node}"   # no local path in the saved config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    # sparsity: the pruned fraction (0 for a dense model, whose dequantized grid has some zeros)
    out.update(sparsity=round(PR.sparsity(model), 6) if pruned or method == "prune" else 0.0,
               size_sparse_mb=round(PR.sparse_bytes(model) / 1e6, 2))
    return out


def quant_step(node: str, method: str, p, args, tmp: Path, pruned: bool) -> dict:
    """GPTQ or AWQ of the input model at the node's width, on quant's calibration passages."""
    from transformers import AutoTokenizer

    from stages.methods import awq, gptq

    cfg = p["quant"]
    bits = p["chains"][node].get("bits") or p[method]["bits"]   # the node's own width, if it sets one
    texts = read_calibration(args.calib, cfg["calib_size"], p["seed"])
    tok = AutoTokenizer.from_pretrained(args.input)
    calib = gptq.tokenized_calibration(tok, texts, cfg["calib_seq_len"])   # one cut for both methods
    tmp.mkdir()
    extra = {}
    if method == "awq":
        extra["dtype"] = awq.search_dtype(p["awq"]["dtype"], cfg["device"])
        extra["calib_passages"] = len(awq.uniform(calib, cfg["calib_seq_len"]))   # full-length only
        awq.quantize(args.input, calib, bits, cfg, p["seed"], tmp / f"int{bits}", extra["dtype"])
    else:
        gptq.quantize(args.input, tok, calib, bits, cfg, p["seed"], tmp / f"int{bits}")
    model, _ = load(args.input)   # sparsity: of the weights the quantizer was given
    return {"bits": bits, "sparsity": round(PR.sparsity(model), 6) if pruned else 0.0, **extra}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--input", "--teacher", "--calib", "--out", "--metrics"):
        ap.add_argument(flag, required=True, type=Path)
    ap.add_argument("--node", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    chains = P.validate(P.read(args.params), Path(args.params)).chains
    if args.node not in chains:
        raise PipelineError(f"--node {args.node!r} is not in params chains: {sorted(chains)}")
    method = chains[args.node].method
    p = P.load(args.params, keys(args.node, method))
    require_dir(args.input, "input model folder"), require_dir(args.teacher, "teacher (base) folder")
    # pruning's magnitude ranking does not depend on the thread count: 2 there
    threads = p[method]["threads"] if method in ("distill", "awq") else \
        p["quant"]["threads"] if method in QUANTIZED else 2
    pin_cpu_numerics(threads)  # the weights this writes are results: fixed kernel paths
    device = p["distill"]["device"] if method == "distill" else "cpu"
    R.setup(device, threads, "distill.device")   # offline hub, CUDA checked, torch threads
    meter = E.open_meter(p["energy"], device)
    with atomic_path(args.out) as tmp, timed(f"{args.node}: {method} of {args.input}"):
        pruned = "prune" in steps(chains, args.node)[:-1]
        step = (lambda: quant_step(args.node, method, p, args, tmp, pruned)) if method in QUANTIZED else \
            (lambda: dense_step(args.node, method, p, args, tmp, pruned))
        out, energy = meter.once(step, 1, "run")
        M.write(args.metrics, M.LmChain(
            method="+".join(steps(chains, args.node)), input=chains[args.node].input,
            step=method, bits=out.pop("bits", 32), compress_time_s=round(energy["seconds"], 2),
            size_mb=round(dir_size_mb(tmp), 2), compress_energy=energy, **out))


if __name__ == "__main__":
    run_main(main)
