"""End to end on the real SmolLM2-135M-Instruct: export, GPTQ int8 + int4, evaluate, time;
and quality floors on the first 300 official LAMBADA examples (../shared, skipped when
absent). `pytest -m e2e`; 10-25 minutes on 2 CPU cores (quantization dominates).

Calibration is smaller than the pipeline's (32 passages x 128 tokens instead of 128 x 128)
so each width quantizes in about a minute on CPU; the floors hold with it.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.core.files import dir_size_mb
from stages.datasets.lambada import check_disjoint, read_jsonl
from stages.entry import lambada_data, lm_eval, lm_export, lm_quantize
from stages.schema import metrics as M
from tests.conftest import ROOT, shared_path

pytestmark = pytest.mark.e2e

QUALITY_EXAMPLES = 300
INT8_MAX_DROP, INT4_MAX_DROP = 0.02, 0.12   # accuracy points below the base model


def params_file(folder: Path, name: str, **sections) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["quant"].update(bits=[8, 4], calib_size=32, calib_seq_len=128, device="cpu")
    params["eval_lm"].update(device="cpu", batch_size=16, threads=2)
    params["bench_lm"].update(device="cpu", threads=2, decode_tokens=8, prefill_tokens=64,
                              speed_repeats=1, score_examples=16,
                              sweep=dict(kernels=["gptq_torch", "gptq_torch_aten"], decode_tokens=4,
                                         prefill_tokens=16, repeats=1))
    params["lambada"]["source"] = "offline"
    for section, values in sections.items():
        params[section].update(values)
    p = folder / name
    p.write_text(yaml.safe_dump(params))
    return p


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lm_e2e")


@pytest.fixture(scope="module")
def base(work) -> Path:
    lm_export.main(["--out", str(work / "base"), "--params", str(params_file(work, "p.yaml"))])
    return work / "base"


@pytest.fixture(scope="module")
def offline(work) -> Path:
    lambada_data.main(["--out", str(work / "lambada"), "--params", str(params_file(work, "p.yaml"))])
    return work / "lambada"


@pytest.fixture(scope="module")
def gptq(work, base, offline) -> Path:
    lm_quantize.main(["--base", str(base), "--calib", str(offline / "calib.jsonl"),
                      "--out", str(work / "gptq"), "--metrics", str(work / "quantize.json"),
                      "--params", str(params_file(work, "p.yaml"))])
    return work / "gptq"


def evaluate(models: Path, data: Path, out: Path, limit: int) -> dict:
    p = params_file(out.parent, f"eval-{limit}.yaml", eval_lm={"limit": limit})
    lm_eval.main(["--models", str(models), "--data", str(data), "--out", str(out), "--params", str(p)])
    return M.read(out, M.LmEvalFile).root


@pytest.fixture(scope="module")
def offline_scores(work, base, gptq, offline) -> dict:
    data = offline / "eval.jsonl"
    return {**evaluate(base, data, work / "base.json", 40),
            **evaluate(gptq, data, work / "gptq.json", 40)}


def test_export_is_a_plain_float32_folder_without_local_paths(base):
    config = json.loads((base / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config
    for f in base.glob("*config.json"):
        text = f.read_text()
        for marker in ("site-packages", "/tmp", "/work", str(Path.home())):
            assert marker not in text, (f.name, marker)
        assert not re.search(r'"(/|[A-Za-z]:\\\\)[^"]*"', text), f.name   # no absolute path value
    from safetensors import safe_open
    with safe_open(base / "model.safetensors", "pt") as st:
        assert {st.get_slice(k).get_dtype() for k in st.keys()} == {"F32"}
    assert 500 < dir_size_mb(base) < 600          # 135M float32 parameters (tied embeddings)


def test_pipeline_metrics(work, offline_scores):
    b, int8, int4 = offline_scores["base"], offline_scores["int8"], offline_scores["int4"]
    quant = M.read(work / "quantize.json", M.LmQuantizeFile).root
    assert (b.bits, int8.bits, int4.bits) == (32, 8, 4)
    assert b.num_examples == int8.num_examples == int4.num_examples == 40
    assert b.acc >= 0.3       # SmolLM2-135M gets about half of the offline BBC targets (0.464 on 500)
    for m in (int8, int4):
        assert m.kernels.get("Linear") == 1 and sum(m.kernels.values()) == 30 * 7 + 1
    assert int4.size_mb < int8.size_mb < b.size_mb / 2
    for name in ("int8", "int4"):
        assert quant[name].size_mb == pytest.approx(offline_scores[name].size_mb, abs=0.01)
        assert quant[name].quant_time_s > 0
    assert int8.ppl == pytest.approx(b.ppl, rel=0.1)   # int8 barely moves the perplexity


def test_bench(work, base, gptq, offline, offline_scores):
    p = params_file(work, "bench.yaml")
    for name, folder in [("base", base), ("gptq", gptq)]:
        out = work / f"bench-{name}.json"
        # its own process, as dvc repro runs it: a native crash of a kernel (torch.compile'd
        # C++) fails this test with the child's trace instead of ending the whole session
        run = subprocess.run([sys.executable, "-X", "faulthandler", "-m", "stages.entry.lm_bench",
                              "--models", str(folder), "--data", str(offline / "eval.jsonl"),
                              "--out", str(out), "--params", str(p)],
                             cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, f"lm_bench {name}: exit {run.returncode}\n{run.stderr[-6000:]}"
        for variant, m in M.read(out, M.LmBenchFile).root.items():
            print(f"{variant}: decode {m.decode_tokens_per_s:.1f} tok/s, prefill "
                  f"{m.prefill_tokens_per_s:.0f} tok/s, {m.eval_examples_per_s:.2f} examples/s")
            # no absolute floor: the figures follow the machine's load (2 shared cores here
            # gave 0.2-13 decode tokens/s for the same model). A 64-token batch-1 forward
            # always yields more tokens/s than one-token decode steps.
            assert m.prefill_tokens_per_s > m.decode_tokens_per_s
            assert m.kernels == json.loads((work / f"{name}.json").read_text())[variant]["kernels"]
            if variant == "int4":   # both swept kernels run 4-bit weights
                assert {k: s["decode_tokens_per_s"] > 0 for k, s in m.sweep.items()} == \
                    {"gptq_torch": True, "gptq_torch_aten": True}


@pytest.fixture(scope="module")
def shared_scores(work, base, gptq, offline) -> dict:
    """lambada.source=local on the shared official file; the first 300 examples scored."""
    path = shared_path("lambada", "lambada_test.jsonl")
    p = params_file(work, "local.yaml", lambada={"source": "local", "local_path": str(path)})
    lambada_data.main(["--out", str(work / "lambada_local"), "--params", str(p)])
    data = work / "lambada_local" / "eval.jsonl"
    evals = read_jsonl(data)
    assert len(evals) == 5153
    check_disjoint(read_jsonl(offline / "calib.jsonl"), evals)   # the calibration GPTQ saw
    return {**evaluate(base, data, work / "shared-base.json", QUALITY_EXAMPLES),
            **evaluate(gptq, data, work / "shared-gptq.json", QUALITY_EXAMPLES)}


def test_quality_floors_on_official_lambada(shared_scores):
    b, int8, int4 = shared_scores["base"], shared_scores["int8"], shared_scores["int4"]
    print(" ".join(f"{k}: acc {m.acc:.4f} ppl {m.ppl:.2f};" for k, m in shared_scores.items()))
    assert b.num_examples == int8.num_examples == int4.num_examples == QUALITY_EXAMPLES
    assert b.acc > 0.2            # the base model itself works (0.2944 on all 5153 examples)
    assert int8.acc >= b.acc - INT8_MAX_DROP, (b.acc, int8.acc)
    assert int4.acc >= b.acc - INT4_MAX_DROP, (b.acc, int4.acc)
