"""A GPTQ node built for ONNX Runtime GenAI (stages/runtimes/lm/ort_genai.py: the gptq_v2 -> v1
repack, then the builder's GPTQ loader): the builder options the `gptq_head` knob becomes, and
(e2e) the head type each build records, read back from its graph, and the graph scoring as the
GPTQ checkpoint does in PyTorch."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from stages.models import lm_record
from stages.runtimes import lm

ROOT = Path(__file__).resolve().parents[1]
IDS = [1, 504, 2443, 314, 253, 3474, 30, 378, 1015, 282, 3240, 28, 1062, 2143, 314, 6035]


@pytest.mark.parametrize("head, precision, excluded, last", [
    ("fp32", "int4", {"/lm_head/MatMul", "/model/embed_tokens/Gather"}, None),
    ("int8", "int4", {"/model/embed_tokens/Gather"}, "int8"),
    ("int4", "int8", {"/model/embed_tokens/Gather"}, "int4"),
    ("int4", "int4", set(), None),     # the builder default: one shared int4 table
])
def test_gptq_head_reaches_the_builder_as_asked(head, precision, excluded, last):
    """The options a GPTQ build passes are parsed by the builder's own QuantConfig into the head
    and lookup overrides that the ort_genai runtime's gptq_head knob names."""
    qc = pytest.importorskip("onnxruntime_genai.models.quantization.quant_config")
    from stages.methods.ort_build import extra_options

    knobs = lm.get("ort_genai").validate({"gptq_head": head})
    kv = dict(o.split("=", 1) for o in extra_options(knobs, precision, gptq=True))
    kv["nodes_to_exclude"] = [n for n in kv.get("nodes_to_exclude", "").split(",") if n]
    cfg = qc.QuantConfig.from_extra_options(kv, precision, "cpu")
    got_excluded = {o.match["name"] for o in cfg.weights.overrides if o.exclude}
    got_last = [o.type for o in cfg.weights.overrides if o.match.get("preset") == "last_matmul"]
    assert got_excluded == excluded and got_last == ([last] if last else [])
    rtn = extra_options({**knobs, "gptq_head": "int8"}, precision, gptq=False)   # RTN ignores it
    assert rtn == extra_options(knobs, precision, gptq=False)


HEADS = {"fp32": "float32", "int8": "int8 block 32", "int4": "int4 block 32 + shared lookup"}


@pytest.fixture(scope="module")
def gptq_builds(tiny_hf, tmp_path_factory) -> dict:
    """tiny_hf GPTQ-quantized at 4 bits (group 32) as a node, built by lm_build for ONNX Runtime
    GenAI once per gptq_head (~1 min: one builder run each)."""
    from stages.entry import lm_build
    from stages.methods import lm as methods
    from tests.test_lm_models import write_params

    try:
        lm.get("ort_genai").require()
    except Exception as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("ort-gptq")
    words = "the quick brown fox jumps over a lazy dog while seven small birds sing in the tall old tree".split()
    calib = [" ".join(words[i % 7:] + words[:i % 7]) * 3 for i in range(16)]
    node = root / "tiny-gptq4"
    knobs = {"bits": 4, "group_size": 32, "calib_size": 8, "calib_seq_len": 32}
    methods.get("gptq").apply(tiny_hf, node, knobs, calib)
    lm_record.write(node, {"model": "tiny", "architecture": "LlamaForCausalLM",
                           "chain": [{"method": "gptq", "knobs": knobs}]})
    variants = {f"v-{h}": {"node": "tiny-gptq4", "runtime": "ort_genai", "gptq_head": h} for h in HEADS}
    params = write_params(root, variants=variants)
    out = {"node": node}
    for key in variants:
        lm_build.main(["--node", str(node), "--runtime", "ort_genai", "--variant", key, "--out", str(root / key),
                       "--metrics", str(root / f"{key}.json"), "--params", str(params)])
        out[key[2:]] = (root / key, json.loads((root / f"{key}.json").read_text()))
    return out


@pytest.mark.e2e
def test_gptq_head_is_built_as_asked_and_read_back_from_the_graph(gptq_builds):
    from stages.methods.ort_build import head_type

    for head, expected in HEADS.items():
        folder, m = gptq_builds[head]
        assert m["build"]["head_type"] == expected == head_type(folder)
        assert m["record"]["knobs"]["gptq_head"] == head and lm_record.read(folder) == m["record"]
        assert m["record"]["chain"][0]["knobs"]["bits"] == 4


@pytest.mark.e2e
def test_the_ort_graph_holds_the_gptq_codes(gptq_builds, tiny_hf):
    """With a float head the graph scores as PyTorch scores the GPTQ checkpoint (measured max
    |logit difference| 0.005; the float model is 0.12 away): the v2 -> v1 zero-point repack and
    the builder's GPTQ loader keep every code."""
    pt = lm.get("pytorch")
    want, float_ = pt.open(gptq_builds["node"], 1).logits(IDS), pt.open(tiny_hf, 1).logits(IDS)
    got = lm.get("ort_genai").open(gptq_builds["fp32"][0], 1).logits(IDS)
    assert np.abs(got - want).max() < 0.02 < np.abs(float_ - want).max()
    int4 = lm.get("ort_genai").open(gptq_builds["int4"][0], 1).logits(IDS)   # a 4-bit head: close, not equal
    assert 0.02 < np.abs(int4 - want).max() and np.corrcoef(int4.ravel(), want.ravel())[0, 1] > 0.95


@pytest.mark.e2e
def test_the_graph_does_not_carry_this_repositorys_commit(gptq_builds):
    """The builder stamps `git rev-parse HEAD` run beside its package, i.e. this repo when the
    venv lives in it: else every commit would change the model's bytes."""
    onnx = pytest.importorskip("onnx")
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    for h in HEADS:
        stamp = onnx.load(str(gptq_builds[h][0] / "model.onnx"), load_external_data=False).producer_version
        assert stamp.startswith("0.") and (not head or head not in stamp), stamp
