"""End to end on the real SmolLM2 model: export, GPTQ 4-bit on a small calibration set,
evaluate 20 examples. A few minutes on 2 CPU cores (pytest -m e2e)."""
from __future__ import annotations

import json

import pytest
import yaml

from stages import lambada_data, lm_eval, lm_export, lm_quantize
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm_e2e")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["quant"].update(bits=4, calib_size=8, calib_seq_len=128, device="cpu")
    params["eval_lm"].update(limit=20, batch_size=8, device="cpu", decode_tokens=8, speed_repeats=1)
    p = tmp / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    lambada_data.main(["--out", str(tmp / "lambada"), "--params", str(p)])
    lm_export.main(["--out", str(tmp / "base"), "--params", str(p)])
    lm_quantize.main(["--base", str(tmp / "base"), "--calib", str(tmp / "lambada" / "calib.jsonl"),
                      "--out", str(tmp / "gptq"), "--metrics", str(tmp / "quantize.json"),
                      "--params", str(p)])
    for models, out in [("base", "base.json"), ("gptq", "gptq.json")]:
        lm_eval.main(["--models", str(tmp / models), "--data", str(tmp / "lambada" / "eval.jsonl"),
                      "--out", str(tmp / out), "--params", str(p)])
    return tmp, p


def test_pipeline_metrics(run):
    tmp, _ = run
    base = json.loads((tmp / "base.json").read_text())["base"]
    int4 = json.loads((tmp / "gptq.json").read_text())["int4"]
    quant = json.loads((tmp / "quantize.json").read_text())["int4"]
    assert base["bits"] == 32 and int4["bits"] == 4 and base["num_examples"] == int4["num_examples"] == 20
    assert base["acc"] >= 0.2  # SmolLM2-135M gets about half of the offline BBC targets
    assert base["acc"] <= base["topk_acc"] and base["topk_word_acc"] <= base["topk_acc"]
    assert int4["size_mb"] < base["size_mb"] / 2 and quant["size_mb"] == pytest.approx(int4["size_mb"], abs=0.01)
    for m in (base, int4):
        assert m["ppl"] > 1 and m["decode_tokens_per_s"] > 0 and m["prefill_tokens_per_s"] > 0


def test_base_on_shared_lambada(run, lambada_jsonl):
    tmp, p = run
    lm_eval.main(["--models", str(tmp / "base"), "--data", str(lambada_jsonl),
                  "--out", str(tmp / "shared.json"), "--params", str(p)])
    base = json.loads((tmp / "shared.json").read_text())["base"]
    assert base["num_examples"] == 20 and 0 <= base["acc"] <= 1
