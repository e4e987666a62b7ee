"""End to end on the real SmolLM2-135M-Instruct through the generic LM entries: lm_source from
its params entry, GPTQ int8 + int4 (lm_compress), PyTorch builds, evaluation and timing; and
quality floors on the first 300 official LAMBADA examples (../shared, skipped when absent).
`python -m pytest -m slow tests/test_lm_e2e.py`; 15-25 minutes on 2 CPU cores (GPTQ dominates).

Calibration is smaller than the pipeline's (32 passages x 128 tokens instead of 128 x 128) so
each width quantizes in a few minutes on CPU; the floors hold with it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from stages.core.files import dir_size_mb
from stages.datasets.lambada import check_disjoint, read_jsonl
from stages.entry import lambada_data, lm_bench, lm_build, lm_compress, lm_eval, lm_reference, lm_source
from tests.conftest import ROOT, shared_path

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUALITY_EXAMPLES = 300
INT8_MAX_DROP = 0.02   # accuracy points below the base model
# int4 from this test's small GPTQ (32 passages of 128 tokens) is a working model, not a good one:
# it kept 62 % of the base here (0.2033 vs 0.3267 on the first 300 examples, AMD EPYC, 2026-12-07),
# and its bits move with the host's kernels; a broken quantizer scores near 0. How much int4 keeps
# with the pipeline's own recipes is measured on the full set (stages/entry/lm_int4_frontier.py).
INT4_MIN_SHARE = 0.5
MODEL = "smollm2-135m"


def params_file(folder: Path, name: str, **sections) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["methods"]["gptq"].update(calib_size=32, calib_seq_len=128)
    params["bench_lm"].update(threads=2, decode_tokens=8, prefill_tokens=64, speed_repeats=1)
    params["lambada"]["source"] = "offline"
    for section, values in sections.items():
        params[section].update(values)
    p = folder / name
    p.write_text(yaml.safe_dump(params))
    return p


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("lm_e2e")
    params_file(w, "p.yaml")
    return w


@pytest.fixture(scope="module")
def base(work) -> Path:
    lm_source.main(["--model", MODEL, "--out", str(work / "base"), "--metrics", str(work / "source.json"),
                    "--params", str(work / "p.yaml")])
    return work / "base"


@pytest.fixture(scope="module")
def offline(work) -> Path:
    lambada_data.main(["--out", str(work / "lambada"), "--params", str(work / "p.yaml")])
    return work / "lambada"


@pytest.fixture(scope="module")
def builds(work, base, offline) -> dict[str, Path]:
    out = {}
    for bits in (8, 4):
        node = work / f"gptq{bits}"
        lm_compress.main(["--node", f"gptq{bits}", "--method", "gptq", "--bits", str(bits),
                          "--input", str(base), "--teacher", str(base), "--calib", str(offline / "calib.jsonl"),
                          "--out", str(node), "--metrics", str(work / f"gptq{bits}.json"),
                          "--params", str(work / "p.yaml")])
    for name, node in (("base", base), ("int8", work / "gptq8"), ("int4", work / "gptq4")):
        lm_build.main(["--node", str(node), "--runtime", "pytorch", "--out", str(work / f"build-{name}"),
                       "--metrics", str(work / f"build-{name}.json"), "--params", str(work / "p.yaml")])
        out[name] = work / f"build-{name}"
    return out


def evaluate(builds: dict, data: Path, work: Path, tag: str, limit: int) -> dict:
    p = params_file(work, f"eval-{limit}.yaml", eval_lm={"limit": limit})
    scores = {}
    ref = work / f"reference-{tag}"
    lm_reference.main(["--node", str(builds["base"]), "--data", str(data), "--params", str(p),
                       "--out", str(ref / "smollm2-135m.npz")])
    for name, folder in builds.items():
        out = work / f"{tag}-{name}.json"
        lm_eval.main(["--build", str(folder), "--data", str(data), "--out", str(out), "--params", str(p),
                      "--reference", str(ref)])
        scores[name] = json.loads(out.read_text())
    return scores


def test_source_is_a_plain_float32_folder_without_local_paths(base, work):
    config = json.loads((base / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config
    for f in base.glob("*.json"):
        text = f.read_text()
        for marker in ("site-packages", "/tmp", "/work", str(Path.home())):
            assert marker not in text, (f.name, marker)
        # no absolute path value (two segments at least: the vocabulary holds the token "/")
        assert not re.search(r'"(/[^"/\s]+/|[A-Za-z]:\\\\)[^"]*"', text), f.name
    from safetensors import safe_open
    with safe_open(base / "model.safetensors", "pt") as st:
        assert {st.get_slice(k).get_dtype() for k in st.keys()} == {"F32"}
    assert 500 < dir_size_mb(base) < 600          # 135M float32 parameters (tied embeddings)
    record = json.loads((work / "source.json").read_text())["record"]
    assert record["tied_head"] and record["gguf_sha256"] and record["chain"] == []


def test_offline_scores_and_sizes(work, builds, offline):
    s = evaluate(builds, offline / "eval.jsonl", work, "offline", 40)
    b, int8, int4 = s["base"], s["int8"], s["int4"]
    assert b["num_examples"] == int8["num_examples"] == int4["num_examples"] == 40
    assert b["acc"] >= 0.3       # SmolLM2-135M gets about half of the offline BBC targets
    assert [st["knobs"]["bits"] for st in int4["record"]["chain"]] == [4]
    sizes = {k: json.loads((work / f"build-{k}.json").read_text())["size_mb"] for k in builds}
    assert sizes["int4"] < sizes["int8"] < sizes["base"] / 2
    assert int8["ppl"] == pytest.approx(b["ppl"], rel=0.1)   # int8 barely moves the perplexity


def test_bench_times_every_build(work, builds, offline):
    p = params_file(work, "bench.yaml")
    for name, folder in builds.items():   # a host's own folder: it holds this machine's timings only
        out = work / "bench" / "this-host" / f"{name}.json"
        lm_bench.main(["--build", str(folder), "--data", str(offline / "eval.jsonl"), "--out", str(out),
                       "--params", str(p)])
        m = json.loads(out.read_text())
        # no absolute floor: the figures follow the machine's load. A 64-token batch-1 forward
        # always yields more tokens/s than one-token decode steps.
        assert m["prefill_tokens_per_s"] > m["decode_tokens_per_s"] > 0
        assert m["peak_rss_mb"] > 100 and m["record"]["runtime"] == "pytorch"


def test_quality_floors_on_official_lambada(work, builds, offline):
    path = shared_path("lambada", "lambada_test.jsonl")
    p = params_file(work, "local.yaml", lambada={"source": "local", "local_path": str(path)})
    lambada_data.main(["--out", str(work / "lambada_local"), "--params", str(p)])
    data = work / "lambada_local" / "eval.jsonl"
    evals = read_jsonl(data)
    assert len(evals) == 5153
    check_disjoint(read_jsonl(offline / "calib.jsonl"), evals)   # the calibration GPTQ saw
    s = evaluate(builds, data, work, "shared", QUALITY_EXAMPLES)
    b, int8, int4 = s["base"], s["int8"], s["int4"]
    print(" ".join(f"{k}: acc {m['acc']:.4f} ppl {m['ppl']:.2f};" for k, m in s.items()))
    assert b["acc"] > 0.2            # the base model itself works (0.2944 on all 5153 examples)
    assert int8["acc"] >= b["acc"] - INT8_MAX_DROP, (b["acc"], int8["acc"])
    assert int4["acc"] >= INT4_MIN_SHARE * b["acc"], (b["acc"], int4["acc"])
