"""The generic LM stages end to end on a tiny random non-Llama model (Qwen2) read from a local
folder: lm_source -> lm_compress (a quant sweep node and a chain node) -> lm_build -> lm_eval ->
lm_bench, each entry run as DVC runs it, on a params file of the project's shape. Checks that
the record travels with every artifact, that a quantized node scores differently from its base,
and that a runtime scores its build within the conformance tolerance of PyTorch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]


def params_for(tmp: Path, model_dir: Path) -> Path:
    yaml = YAML(typ="safe", pure=True)
    p = yaml.load((ROOT / "params.yaml").read_text())
    p["models"] = {"tiny": {"architecture": "Qwen2ForCausalLM",
                            "weights": {"source": "local", "path": str(model_dir)}}}
    p["quant"] = {"models": ["tiny"], "methods": ["rtn"], "bits": [4], "runtimes": ["pytorch"]}
    p["methods"] = {"rtn": {"group_size": 32}, "prune": {"sparsity": 0.5}}
    p["compress"] = {"tiny-prune": {"model": "tiny", "input": "tiny", "method": "prune"}}
    p["runtimes"] = {"pytorch": {}, "ort_genai": {"accuracy_level": 1}}
    p["variants"] = {"tiny-pytorch": {"node": "tiny", "runtime": "pytorch"},
                     "tiny-ort-fp32": {"node": "tiny", "runtime": "ort_genai", "precision": "fp32"}}
    p["eval_lm"] = {"k": 5, "limit": 12, "threads": 1}
    p["bench_lm"] = {"threads": 1, "decode_tokens": 4, "prefill_tokens": 32, "speed_repeats": 1}
    p["bootstrap"] = {"samples": 20, "seed": 0}
    p["energy"] = {**p["energy"], "method": "estimate", "idle_s": 0.0}
    out = tmp / "params.yaml"
    with out.open("w") as f:
        yaml.dump(p, f)
    return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_qwen2):
    from stages.entry import lm_bench, lm_build, lm_compress, lm_eval, lm_reference, lm_source
    from tests.conftest import shared_path

    lambada_jsonl = shared_path("lambada", "lambada_test.jsonl")

    tmp = tmp_path_factory.mktemp("generic")
    params = str(params_for(tmp, tiny_qwen2))
    data = tmp / "eval.jsonl"
    lines = Path(lambada_jsonl).read_text().splitlines()
    data.write_text("\n".join(lines[:12]) + "\n")
    calib = tmp / "calib.jsonl"
    calib.write_text("\n".join(json.dumps({"text": json.loads(l)["text"]}) for l in lines[100:140]) + "\n")
    n, m = tmp / "nodes", tmp / "metrics"
    lm_source.main(["--model", "tiny", "--out", str(n / "tiny"), "--metrics", str(m / "source.json"),
                    "--params", params])
    common = ["--teacher", str(n / "tiny"), "--calib", str(calib), "--params", params]
    lm_compress.main(["--node", "tiny-rtn4", "--method", "rtn", "--bits", "4", "--input", str(n / "tiny"),
                      "--out", str(n / "tiny-rtn4"), "--metrics", str(m / "rtn4.json")] + common)
    lm_compress.main(["--node", "tiny-prune", "--method", "prune", "--input", str(n / "tiny"),
                      "--out", str(n / "tiny-prune"), "--metrics", str(m / "prune.json")] + common)
    lm_reference.main(["--node", str(n / "tiny"), "--data", str(data), "--params", params,
                       "--out", str(tmp / "reference" / "tiny.npz")])
    builds = {}
    for key, node, rt, variant in (("base", "tiny", "pytorch", "tiny-pytorch"),
                                   ("rtn4", "tiny-rtn4", "pytorch", None),
                                   ("ort", "tiny", "ort_genai", "tiny-ort-fp32")):
        b = tmp / "builds" / key
        lm_build.main(["--node", str(n / node), "--runtime", rt, "--out", str(b), "--metrics",
                       str(m / f"build-{key}.json"), "--params", params]
                      + (["--variant", variant] if variant else []))
        lm_eval.main(["--build", str(b), "--data", str(data), "--out", str(m / f"eval-{key}.json"),
                      "--params", params, "--reference", str(tmp / "reference")])
        builds[key] = b
    lm_bench.main(["--build", str(builds["base"]), "--data", str(data), "--out", str(m / "bench" / "bench-base.json"),
                   "--params", params])
    return {"nodes": n, "metrics": m, "builds": builds}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_record_travels_with_every_artifact(pipeline):
    m = pipeline["metrics"]
    assert read(m / "source.json")["record"]["architecture"] == "Qwen2ForCausalLM"
    rtn = read(m / "eval-rtn4.json")["record"]
    assert rtn["model"] == "tiny" and rtn["runtime"] == "pytorch"
    assert [s["method"] for s in rtn["chain"]] == ["rtn"] and rtn["chain"][0]["knobs"]["bits"] == 4
    assert rtn["chain"][0]["knobs"]["group_size"] == 32   # the `methods` default reached the step
    ort = read(m / "eval-ort.json")["record"]["knobs"]
    assert ort["precision"] == "fp32" and ort["accuracy_level"] == 1   # variant over runtime defaults
    assert read(m / "prune.json")["step"]["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_scores_move_with_the_model_and_agree_across_runtimes(pipeline):
    m = pipeline["metrics"]
    base, rtn, ort = (read(m / f"eval-{k}.json") for k in ("base", "rtn4", "ort"))
    assert base["num_examples"] == rtn["num_examples"] == 12 and len(base["hits"]) == 12
    assert rtn["ppl"] != base["ppl"]                          # 4-bit codes change the logits
    assert ort["ppl"] == pytest.approx(base["ppl"], rel=1e-3)   # ONNX Runtime fp32 = the same model
    lo, hi = base["acc_ci95"]
    assert lo <= base["acc"] <= hi


def test_fidelity_is_zero_for_the_reference_and_moves_with_the_weights(pipeline):
    """The reference variant (PyTorch fp32 of the base) reproduces the stored rows exactly; ONNX
    Runtime fp32 is the same model up to float rounding; 4-bit codes move the distributions."""
    m = pipeline["metrics"]
    base, rtn, ort = (read(m / f"eval-{k}.json") for k in ("base", "rtn4", "ort"))
    assert base["kl_mean"] < 1e-7 and base["agreement"] == 1.0 and base["agree"] == "1" * 12   # float32 storage
    assert ort["kl_mean"] < 1e-4 and ort["agreement"] == 1.0
    assert rtn["kl_mean"] > 100 * max(ort["kl_mean"], 1e-9)
    for doc in (base, rtn, ort):
        lo, hi = doc["kl_ci95"]
        assert lo <= doc["kl_mean"] <= hi and len(doc["agree"]) == doc["num_examples"]


def test_the_bench_measures_through_the_shared_meter(pipeline):
    b = read(pipeline["metrics"] / "bench" / "bench-base.json")
    assert b["decode_tokens_per_s"] > 0 and b["ttft_ms"] > 0 and b["peak_rss_mb"] > 0
    assert b["tpot_p90_ms"] >= b["tpot_ms"] and b["machine"]["cpu"]
    assert b["record"]["runtime"] == "pytorch"
