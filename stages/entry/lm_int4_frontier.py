"""The int4 recipe frontier of one LM: GPTQ's knobs (group size, symmetric or asymmetric grid,
act-order, calibration size and length), round-to-nearest beside it, and 8-bit for the decoder
layers a per-layer measurement finds most sensitive. Every recipe is quantized from the model's
base through GPTQModel and scored on every example of the evaluation file (the official LAMBADA
at lambada.local_path by default), paired against the base on the same examples.

    dvc repro lambada_data lm_source@smollm2-135m
    python -m stages.entry.lm_int4_frontier --model smollm2-135m --device cuda

Recipes: stages/methods/int4_recipes.yaml (schema and quantizer: stages/methods/int4_recipes.py).
Sensitivity: each decoder layer alone is rounded to the int4 grid (the others stay float) and the
mean next-token loss on calibration passages is read; the layers whose rounding raises it most
are the ones a recipe's `int8_layers` keeps at 8 bits (GPTQModel's per-module `dynamic` override). Calibration is the lambada_data stage's
calib.jsonl, checked disjoint from the evaluated text. On CUDA the model is quantized and scored
in float16 (the base too), on a CPU in float32. Scoring is batched (the harness's rule, as
lm_gpu's `score_all`); sizes are the safetensors bytes of each folder.

An analysis, not a stage (docs/pipeline.md): on a CPU it takes hours on the full official set.
Writes metrics/lm/int4_frontier/<model>.json and plots/int4_frontier/<model>.png;
`--figure` redraws the figure from the JSON (on a machine with Chromium); `--only a,b` runs some
recipes, and `--merge run1.json run2.json` joins such runs made on one machine into --out.
"""
from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from stages.core.errors import PipelineError, log, run_main, timed
from stages.core.files import read_json, require_dir, write_json
from stages.datasets.lambada import check_disjoint, read_jsonl
from stages.methods.gptq import sample, tokenized_calibration
from stages.methods.int4_recipes import RECIPES, SEED, Frontier, load_quantized, quantize, sensitivity
from stages.runtimes import torch_lm as R
from stages.runtimes.lm.base import context_length
from stages.schema.load import load_sections
from stages.reporting.geometry import pareto
from stages.schema.params_lm import Lambada
from stages.tasks import lambada as S
from stages.tasks.classify import paired as paired_delta
from stages.tasks.scoring import encode

SAMPLES = 1000     # bootstrap resamples of the paired differences
K = 5              # top-k of the scores (eval_lm.k)


def safetensors_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) / 1e6


def score(model, reqs, pad: int, batch: int) -> dict:
    import torch

    with torch.inference_mode():
        scores = R.score_all(model, reqs, pad, batch, K)
    agg = S.aggregate(scores, K)
    hits = "".join("1" if s["greedy"] else "0" for s in scores)
    return {"acc": agg["acc"], "ppl": agg["ppl"], "hits": hits}


def paired(row: dict, base: dict) -> None:
    """The paired difference to the base on the same examples (the classifier's rule), and the share kept."""
    row |= paired_delta([int(h) for h in row["hits"]], [int(h) for h in base["hits"]], SAMPLES, SEED)
    row["fraction_of_base"] = row["acc"] / base["acc"]


def frontier(rows: dict[str, dict]) -> None:
    """Pareto flag on (size_mb down, acc up) across the recipes and the base."""
    front = set(pareto({k: (r["size_mb"], r["acc"]) for k, r in rows.items()}, cost_lower=True))
    for k, r in rows.items():
        r["pareto"] = k in front


def run(args, cfg: dict, out: Path) -> None:
    """Writes `out` after the base and again after every recipe (an interrupted run keeps its rows)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    R.setup(args.device, args.threads, "--device")
    base_dir = require_dir(args.base or Path("models/lm/nodes") / args.model, "base node folder")
    evals = read_jsonl(args.eval, "evaluation file")[:args.limit or None]
    calib_recs = read_jsonl(args.calib, "calibration file")
    check_disjoint(calib_recs, evals)
    texts = [c["text"] for c in calib_recs]
    chosen = {n: r for n, r in cfg["recipes"].items() if not args.only or n in args.only}
    for name, r in chosen.items():   # every size checked before any work
        if r["method"] == "gptq" and r["calib_size"] > len(texts):
            raise PipelineError(f"{args.recipes}: {name}: calib_size={r['calib_size']} exceeds the "
                                f"{len(texts)} calibration passages of {args.calib}")
    if cfg["sensitivity"]["passages"] > len(texts):
        raise PipelineError(f"{args.recipes}: sensitivity.passages exceeds the {len(texts)} calibration passages")
    tok = AutoTokenizer.from_pretrained(base_dir)
    reqs = encode(tok, [e["text"] for e in evals], context_length(base_dir))
    pad = R.pad_id(tok)
    dtype = torch.float16 if args.device == "cuda" else torch.float32

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, device_map=args.device).eval()
    sens_ids = [c["input_ids"][0] for c in tokenized_calibration(
        tok, sample(texts, cfg["sensitivity"]["passages"], SEED), 128)]
    with timed(f"per-layer sensitivity on {len(sens_ids)} passages"):
        sens = sensitivity(model, sens_ids, cfg["sensitivity"])
    ranked = sorted(range(len(sens)), key=lambda i: -sens[i])
    with timed(f"scoring the base on {len(reqs)} examples"):
        base = {"size_mb": safetensors_mb(base_dir), **score(model, reqs, pad, args.batch)}
    del model
    rows = {"base": {**base, "recipe": None, "delta_acc": 0.0, "delta_acc_ci95": [0.0, 0.0],
                     "fraction_of_base": 1.0}}
    import gptqmodel
    import transformers
    doc = {"model": args.model, "device": args.device, "dtype": str(dtype).removeprefix("torch."),
           "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
           "eval_file": args.eval.name, "num_examples": len(reqs),
           "calibration": {"file": "data/lambada/calib.jsonl", "passages": len(texts)},
           "sensitivity": {"loss_increase": sens, "ranked": ranked, **cfg["sensitivity"]},
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "gptqmodel": gptqmodel.__version__},
           "rows": rows}
    frontier(rows)
    write_json(out, doc)
    for name, recipe in chosen.items():
        calib = [] if recipe["method"] == "rtn" else [c["input_ids"][0] for c in tokenized_calibration(
            tok, sample(texts, recipe["calib_size"], SEED), recipe["calib_seq_len"])]
        layers8 = sorted(ranked[:recipe["int8_layers"]])
        with tempfile.TemporaryDirectory(prefix="frontier-") as tmp:
            with timed(f"{name}: quantizing"):
                seconds = quantize(base_dir, recipe, calib, layers8, args.device, Path(tmp) / name)
            model = load_quantized(Path(tmp) / name, args.device)
            with timed(f"{name}: scoring {len(reqs)} examples"):
                row = {"recipe": recipe, "layers_8bit": layers8, "quant_seconds": seconds,
                       "kernels": R.kernels(model), "size_mb": safetensors_mb(Path(tmp) / name),
                       **score(model, reqs, pad, args.batch)}
            del model
        paired(row, base)
        log.info(f"{name}: acc {row['acc']:.4f} ({row['fraction_of_base']:.3f} of base), {row['size_mb']:.1f} MB")
        rows[name] = row
        frontier(rows)
        write_json(out, doc)


SAME = ("model", "device", "dtype", "gpu", "eval_file", "num_examples", "versions", "sensitivity")


def merge(docs: list[dict], recipes: dict) -> dict:
    """Rows of runs split with --only (on one machine, one set of examples) in one file: every
    run must agree on what SAME names and score the base identically, and every row must have
    been made with the recipe the recipes file now gives that name."""
    first = docs[0]
    for doc in docs[1:]:
        differ = [k for k in SAME if doc[k] != first[k]]
        if differ or doc["rows"]["base"]["hits"] != first["rows"]["base"]["hits"]:
            raise PipelineError(f"--merge: runs differ in {differ or ['the base scores']}; rerun them together")
    rows = {k: v for doc in docs for k, v in doc["rows"].items()}
    for name, row in rows.items():
        if name != "base" and recipes.get(name) != row["recipe"]:
            raise PipelineError(f"--merge: row {name} was made with {row['recipe']}, the recipes file "
                                f"now says {recipes.get(name)}")
    frontier(rows)
    return {**first, "rows": rows}


def runtime_rows(doc: dict, folder: Path) -> list[dict]:
    """The rows of built variants scored on the frontier's examples (stages/entry/lm_full_set.py)."""
    rows = map(read_json, sorted((folder / "runtimes").glob("*.json")))
    return [r for r in rows if r["record"]["model"] == doc["model"] and r["num_examples"] == doc["num_examples"]]


def figure(doc: dict, out: Path, extra: list[dict] = ()) -> None:
    """Accuracy against size on disk, paired intervals as bars, the frontier joined, and `extra`."""
    from stages.reporting import export

    browser = export.find_browser()
    import plotly.graph_objects as go

    rows = doc["rows"]
    front = sorted((r for r in rows.values() if r["pareto"]), key=lambda r: r["size_mb"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[r["size_mb"] for r in front], y=[100 * r["acc"] for r in front],
                             mode="lines", line={"dash": "dot", "color": "grey"}, name="frontier"))
    def bars(r):   # the paired 95 % interval around the point
        lo, hi = r["delta_acc_ci95"]
        return {"type": "data", "symmetric": False, "thickness": 1, "array": [100 * (hi - r["delta_acc"])],
                "arrayminus": [100 * (r["delta_acc"] - lo)]}

    for i, (name, r) in enumerate(sorted(rows.items(), key=lambda kv: -kv[1]["acc"])):   # legend: best first
        fig.add_trace(go.Scatter(
            x=[r["size_mb"]], y=[100 * r["acc"]], name=f"{name}: {100 * r['acc']:.1f} %",
            mode="markers+text" if r["pareto"] else "markers", text=[name], textposition="middle right",
            marker={"size": 9, "symbol": ["circle", "square", "diamond"][i // 10 % 3]}, error_y=bars(r)))
    for r in extra:   # another runtime and host than the recipes': named in the legend
        label = r["name"].split(" · ")[-1]
        fig.add_trace(go.Scatter(
            x=[r["size_mb"]], y=[100 * r["acc"]], mode="markers+text", text=[label], textposition="middle right",
            name=f"{label} on {r['host']['cpu']} ({r['threads']} threads): {100 * r['acc']:.1f} %",
            marker={"size": 11, "symbol": "x"}, error_y=bars(r)))
    fig.add_hline(y=95 * rows["base"]["acc"], line_dash="dash", annotation_text="95 % of the base")
    fig.update_layout(
        title=f"{doc['model']}: int4 recipes, LAMBADA accuracy vs size<br><sup>{doc['num_examples']} examples "
              f"({doc['eval_file']}), {doc['gpu'] or 'CPU'}, {doc['dtype']}; bars: paired 95 % interval "
              "against the base; labels: the frontier</sup>",
        xaxis={"title": "size on disk (MB: safetensors, or the runtime's folder for x; log scale)", "type": "log"},
        yaxis_title="LAMBADA accuracy (%)", width=1100, height=620, template="plotly_white")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:   # kaleido names the file by its stem
        export.write_png([(out.stem, "int4 frontier", fig)], Path(tmp), browser)
        (Path(tmp) / f"{out.stem}.png").replace(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--base", type=Path, help="the base node folder (default models/lm/nodes/<model>)")
    ap.add_argument("--eval", type=Path, help="evaluation JSONL (default lambada.local_path)")
    ap.add_argument("--calib", type=Path, default=Path("data/lambada/calib.jsonl"))
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32, help="examples a scoring batch")
    ap.add_argument("--limit", type=int, default=0, help="score the first N examples (0: all)")
    ap.add_argument("--only", type=lambda s: s.split(","), help="comma-separated recipe names")
    ap.add_argument("--recipes", type=Path, default=RECIPES)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, help="default metrics/lm/int4_frontier/<model>.json")
    ap.add_argument("--figure-dir", type=Path, default=Path("plots/int4_frontier"))
    ap.add_argument("--figure", action="store_true", help="only redraw the figure from --out")
    ap.add_argument("--merge", type=Path, nargs="+", help="join the rows of these runs into --out")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", args.model):
        raise PipelineError(f"--model {args.model!r}: not a model name of params.yaml")
    out = args.out or Path("metrics/lm/int4_frontier") / f"{args.model}.json"
    png = args.figure_dir / f"{args.model}.png"
    if args.figure:
        return figure(doc := read_json(out, "frontier file"), png, runtime_rows(doc, out.parent))
    cfg = load_sections(args.recipes, ("frontier",), {"frontier": Frontier})["frontier"]
    unknown = set(args.only or ()) - set(cfg["recipes"])
    if unknown:
        raise PipelineError(f"--only: unknown recipe(s) {sorted(unknown)}; known: {sorted(cfg['recipes'])}")
    if args.merge:
        write_json(out, merge([read_json(f, "frontier file") for f in args.merge], cfg["recipes"]))
    else:
        if args.eval is None:   # the official set a `lambada.source: local` run reads
            args.eval = Path(load_sections(args.params, ("lambada",), {"lambada": Lambada})["lambada"]["local_path"])
        run(args, cfg, out)
    try:
        figure(doc := read_json(out), png, runtime_rows(doc, out.parent))
    except PipelineError as exc:   # a GPU machine without Chromium: the numbers are written
        log.info(f"no figure ({exc}); redraw it with --figure where Chromium is installed")


if __name__ == "__main__":
    run_main(main)
