"""The language-model results, read from the records the LM stages write (metrics/lm/{eval,bench,
build,compress}/*.json): one row per variant, its accuracy paired with its model's reference
variant on the same examples, its cost, and whether it sits on its model's Pareto fronts.
Identities come from the records alone; file names are only where a row is read from."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from stages.core.errors import PipelineError
from stages.core.files import read_json
from stages.reporting.geometry import pareto
from stages.reporting.hosts import bench_host
from stages.tasks.intervals import bootstrap

DIRECTIONS = {"acc": True, "delta_acc": True, "agreement": True, "kl_mean": False, "ppl": False, "decode_tokens_per_s": True, "ttft_ms": False,
              "tpot_ms": False, "size_mb": False, "peak_rss_mb": False, "energy_j_per_token": False,
              "speedup": True}


def canon(record: dict) -> str:
    """The identity of a node: its model and method chain (runtime fields left out)."""
    return json.dumps({"model": record["model"], "chain": record["chain"]}, sort_keys=True)


def _steps(record: dict) -> str:
    """The method chain as written in tables: `prune 2:4+gptq-int4`, or `base`."""
    steps = []
    for s in record["chain"]:
        k = s["knobs"]
        pattern = k.get("pattern", "unstructured")
        steps.append(s["method"] + (f"-int{k['bits']}" if "bits" in k else "")
                     + (f" {pattern}" if pattern != "unstructured"
                        else f" {100 * k['sparsity']:g}%" if "sparsity" in k else ""))
    return "+".join(steps) or "base"


def sparsity(record: dict) -> float | None:
    """The sparsity of a one-step unstructured pruning chain (any method with a `sparsity`
    knob: magnitude, Wanda, SparseGPT), else None: a point of the sparsity sweep."""
    if len(record["chain"]) != 1:
        return None
    k = record["chain"][0]["knobs"]
    return k["sparsity"] if "sparsity" in k and k.get("pattern", "unstructured") == "unstructured" else None


def _precision(record: dict) -> str | None:
    """The runtime's precision knob, unless a quantizer set the width: a quantized checkpoint
    keeps its codes on every runtime, so the knob is not its width."""
    return None if any("bits" in s["knobs"] for s in record["chain"]) else record["knobs"].get("precision")


def label(record: dict) -> str:
    """`method chain · runtime precision` (the model is the table's), derived from the record."""
    prec = _precision(record)
    return f"{_steps(record)} · {record['runtime']}" + (f" {prec}" if prec else "")


def weights(record: dict) -> str:
    """What the weights are, whatever runs them: the chain with its width (`gptq-int4`,
    `base q4_k_m`, `prune fp32`); the deployment matrix's row."""
    quantized = any("bits" in s["knobs"] for s in record["chain"])
    return _steps(record) if quantized else f"{_steps(record)} {_precision(record) or 'fp32'}"


def weight_bits(record: dict) -> int:
    """The weights' bits: the last quantizer's, else the runtime precision's first number (fp32,
    f16, bf16, int8, q8_0, q4_1, q4_k_m: 32, 16, 16, 8, 8, 4, 4)."""
    quant = [s["knobs"]["bits"] for s in record["chain"] if "bits" in s["knobs"]]
    prec = record["knobs"].get("precision", "fp32")
    return quant[-1] if quant else int((re.findall(r"\d+", prec) or [32])[0])


# the keys this module reads from each kind of file (as stages/entry/lm_<kind>.py writes them)
KEYS = {"compress": ("compress_time_s", "compress_energy"), "build": ("size_mb", "build_time_s", "build_energy"),
        "eval": ("acc", "acc_ci95", "ppl", "ppl_ci95", "topk_acc", "topk_word_acc", "k", "num_examples", "hits",
                 "agreement", "agreement_ci95", "kl_mean", "kl_ci95", "agree"),
        "bench": ("ttft_ms", "tpot_ms", "tpot_p90_ms", "decode_tokens_per_s", "e2e_tokens_per_s",
                  "prefill_tokens_per_s", "peak_rss_mb", "bandwidth_fraction", "energy_decode", "machine")}
NOT_NUMBERS = {"hits", "agree", "acc_ci95", "ppl_ci95", "agreement_ci95", "kl_ci95", "energy_decode", "machine", "compress_energy", "build_energy"}


def _read(path: Path, kind: str) -> dict:
    """A metric file of `kind`; a missing key is one line naming the file and the key."""
    doc = read_json(path, f"LM {kind} metric file")
    rec = doc.get("record") if isinstance(doc, dict) else None
    if not isinstance(rec, dict):
        raise PipelineError(f"{path}: no 'record' (not written by the LM stages)")
    missing = [k for k in KEYS[kind] if k not in doc] + [
        f"record.{k}" for k in ("model", "chain") + (("runtime", "knobs") if kind != "compress" else ())
        if k not in rec]
    if missing:
        raise PipelineError(f"{path}: missing key '{missing[0]}'")
    bad = [k for k in KEYS[kind] if k not in NOT_NUMBERS and not _number(doc[k])]
    if bad:
        raise PipelineError(f"{path}: '{bad[0]}' is {doc[bad[0]]!r}, not a number")
    return doc


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _sibling(root: Path, ev_path: Path, kind: str, rec: dict, host: str | None = None) -> dict:
    """The bench (of `host`) or build file of an eval file's variant, of the same artifact."""
    path = (bench_host(root / kind, host) if kind == "bench" else root / kind) / ev_path.relative_to(root / "eval")
    if not path.is_file():
        raise PipelineError(f"{ev_path} has no {kind} metrics ({path} not found): run its lm_{kind} stage")
    doc = _read(path, kind)
    if any(doc["record"].get(k) != rec[k] for k in ("model", "chain", "runtime", "knobs")):
        raise PipelineError(f"{path}: its record is not {ev_path}'s (a stale file from another artifact)")
    return doc


def wanted(variants: dict, quant: dict) -> set[str]:
    """The eval keys the params ask for: every `variants` entry, and every quant sweep cell as
    `<model>-<method>-<runtime>/int<bits>`. A metric file of another key is a leftover of other
    params (a git-tracked file from the full run, during a profile's experiment): never shown."""
    bits = quant["bits"] if isinstance(quant["bits"], list) else [quant["bits"]]
    return set(variants) | {f"{m}-{q}-{r}/int{b}" for m in quant["models"] for q in quant["methods"]
                            for r in quant["runtimes"] for b in bits}


def load(root: Path, samples: int, seed: int, keys: set[str] | None = None,
         host: str | None = None) -> dict[str, dict]:
    """Rows per variant (key: the variant's metric file below metrics/lm/eval, without .json: a
    `variants` entry's name, or `<model>-<method>-<runtime>/int<bits>` of the quant sweep), with
    paired deltas, timed on `host` (None: the only host). `keys` (see `wanted`) limits the rows
    to those; each must have its file."""
    lm = root / "lm"
    compressed = (_read(p, "compress") for p in sorted((lm / "compress").rglob("*.json")))
    nodes = {canon(d["record"]): d for d in compressed}
    rows = {}
    paths = {p.relative_to(lm / "eval").with_suffix("").as_posix(): p for p in (lm / "eval").rglob("*.json")}
    if keys is not None:
        if missing := sorted(keys - set(paths)):
            raise PipelineError(f"no eval metrics for {missing[0]} ({lm / 'eval' / missing[0]}.json): "
                                "run its lm_eval stage")
        paths = {k: p for k, p in paths.items() if k in keys}
    for key, path in sorted(paths.items()):
        ev = _read(path, "eval")
        rec = ev["record"]
        bench, build = _sibling(lm, path, "bench", rec, host), _sibling(lm, path, "build", rec)
        for field in ("hits", "agree"):
            v = ev[field]
            if not isinstance(v, str) or set(v) - {"0", "1"} or len(v) != ev["num_examples"]:
                raise PipelineError(f"{path}: '{field}' is not one 0/1 character per example ({ev['num_examples']})")
        steps = [nodes.get(canon({"model": rec["model"], "chain": rec["chain"][:i + 1]}))
                 for i in range(len(rec["chain"]))]
        if None in steps:
            i = steps.index(None)
            raise PipelineError(f"{path}: no compress metrics for step {i + 1} ({rec['chain'][i]['method']}) "
                                "of its chain in lm/compress")
        energy = bench["energy_decode"]
        rows[key] = {
            "model": rec["model"], "variant": label(rec), "weights": weights(rec), "runtime": rec["runtime"],
            "chain": "+".join(s["method"] for s in rec["chain"]) or "base", "bits": weight_bits(rec),
            "sparsity": sparsity(rec),
            **{k: ev[k] for k in KEYS["eval"]},
            **{k: bench[k] for k in ("ttft_ms", "tpot_ms", "tpot_p90_ms", "decode_tokens_per_s",
                                     "e2e_tokens_per_s", "prefill_tokens_per_s", "peak_rss_mb",
                                     "bandwidth_fraction")},
            "size_mb": build["size_mb"], "energy_j_per_token": energy["j_per_unit"],
            "energy_method": energy["method"], "cpu": bench["machine"].get("cpu"),
            "compress_time_s": round(sum(s["compress_time_s"] for s in steps) + build["build_time_s"], 1),
            "compress_energy_j": sum(s["compress_energy"]["joules"] for s in steps) + build["build_energy"]["joules"],
            "record": rec}
    for model in {r["model"] for r in rows.values()}:
        mine = {k: r for k, r in rows.items() if r["model"] == model}
        ref = reference(mine)
        for r in mine.values():
            paired(r, mine[ref], samples, seed)
            r["reference"] = mine[ref]["variant"]
        for axis in ("decode_tokens_per_s", "size_mb"):
            front = pareto({k: (r[axis], r["acc"]) for k, r in mine.items()}, cost_lower=axis == "size_mb")
            for k, r in mine.items():
                r[f"pareto_{axis}"] = k in front
    return rows


def reference(rows: dict[str, dict]) -> str:
    """The model's uncompressed PyTorch variant (fp32), the yardstick of every paired delta."""
    for key, r in rows.items():
        if r["chain"] == "base" and r["runtime"] == "pytorch" and r["bits"] == 32:
            return key
    raise PipelineError(f"{next(iter(rows.values()))['model']}: no base PyTorch fp32 variant to compare with")


def paired(row: dict, ref: dict, samples: int, seed: int) -> None:
    """Accuracy change against the reference on the same examples: the mean of the per-example
    differences and its bootstrap interval (tighter than comparing two unpaired intervals)."""
    diff = differences(row, ref)
    row["delta_acc"] = sum(diff) / len(diff)
    row["delta_acc_ci95"] = bootstrap(diff, samples, seed)
    row["speedup"] = row["decode_tokens_per_s"] / ref["decode_tokens_per_s"]


def differences(row: dict, ref: dict) -> list[int]:
    """Per-example hit differences (-1, 0, 1) of a row against its reference, same examples."""
    a, b = row["hits"], ref["hits"]
    if len(a) != len(b):
        raise PipelineError(f"{row['variant']} and {ref['variant']} scored different examples ({len(a)} vs {len(b)})")
    return [int(x) - int(y) for x, y in zip(a, b)]


def verdict(row: dict) -> str:
    """Where a variant stands against its model's reference, in words a deployment can use."""
    lo, hi = row["delta_acc_ci95"]
    acc = "same accuracy" if lo <= 0 <= hi else ("more accurate" if lo > 0 else "less accurate")
    front = "on both fronts" if row["pareto_decode_tokens_per_s"] and row["pareto_size_mb"] else \
        "on the speed front" if row["pareto_decode_tokens_per_s"] else \
        "on the size front" if row["pareto_size_mb"] else "dominated"
    return f"{acc}, {front}"
