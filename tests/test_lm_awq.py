"""AWQ (stages/methods/lm/awq.py through lm_compress) on the tiny Llama of test_lm_models: it runs
on a CPU, writes an AWQ GEMM folder that loads with a CPU AWQ kernel and keeps the tiny model's
accuracy, is deterministic and path-free, and composes only where it can (seconds)."""
from __future__ import annotations

import json

import pytest

from stages.core.errors import PipelineError
from stages.runtimes import torch_lm as R
from tests.test_lm_methods import M, check_chains, node
from tests.test_lm_models import (absolute_paths, compress, evaluate, load_state, one_thread,  # noqa: F401
                                  source, tiny, train_tiny)


def awq(src, tmp, name: str = "awq", dtype: str = "auto", **knobs):
    """lm_compress of a `compress` node running AWQ on `src` (a node folder): (folder, metrics)."""
    chains = {name: {"model": "tiny", "input": "tiny", "method": "awq", "dtype": dtype, **knobs}}
    # calib_seq_len 26: every CALIB passage has at least 26 tokens
    methods = {"awq": {"group_size": 64, "calib_size": 8, "calib_seq_len": 26}}
    return compress(name, "awq", src, tmp, compress=chains, methods=methods)


@pytest.fixture(scope="module")
def mha(tmp_path_factory):
    """The tiny Llama with 4 key/value heads: every projection has 64 outputs, as AWQ's clip
    search needs (SmolLM2-135M's are 192, 576 and 1536)."""
    root = tmp_path_factory.mktemp("mha")
    return source(train_tiny(root / "hf", kv_heads=4), root / "tiny")


@pytest.fixture(scope="module")
def awq_out(mha, tmp_path_factory):
    return awq(mha, tmp_path_factory.mktemp("awq"))


def test_a_model_awq_cannot_take_is_a_one_line_error_before_work(tiny, tmp_path):
    with pytest.raises(PipelineError, match=r"AWQ needs every projection width divisible by 64.*k/v outputs is 32") as exc:
        awq(tiny, tmp_path)   # 2 kv heads of 16: 32 outputs
    assert "\n" not in str(exc.value) and not (tmp_path / "awq").exists() and not (tmp_path / "awq.json").exists()


def test_awq_writes_a_4bit_gemm_folder_that_loads_with_a_cpu_awq_kernel(awq_out):
    folder, metrics = awq_out
    step = metrics["step"]
    assert (step["method"], step["bits"], step["dtype"], step["calib_passages"]) == ("awq", 4, "bfloat16", 8)
    assert metrics["record"]["chain"] == [{"method": "awq", "knobs": step["knobs"]}]
    assert metrics["compress_energy"]["joules"] > 0 and metrics["compress_time_s"] > 0
    q = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert (q["quant_method"], q["bits"], q["group_size"], q["format"]) == ("awq", 4, 64, "gemm")
    assert R.method_of(folder) == "awq" and R.bits_of(folder) == 4
    model, _ = R.load(folder, "cpu")
    ran = set(R.kernels(model)) - {"Linear"}
    assert len(ran) == 1 and ran.pop().endswith("AwqLinear"), R.kernels(model)   # 14 packed layers
    assert sum(n for k, n in R.kernels(model).items() if k != "Linear") == 14
    assert not absolute_paths(q) and not (folder / "quant_log.csv").exists()


def test_awq_keeps_the_tiny_models_accuracy(awq_out, mha, tmp_path):
    base = evaluate(mha, tmp_path)
    quant = evaluate(awq_out[0], tmp_path)
    assert quant["record"]["chain"][0]["method"] == "awq" and quant["record"]["runtime"] == "pytorch"
    assert base["acc"] >= 0.9   # the tiny model has memorised its texts
    assert quant["acc"] >= base["acc"] - 0.2 and quant["ppl"] < 2 * base["ppl"], (quant, base)


def test_awq_weights_are_the_scaled_originals_rounded(awq_out, mha):
    """Each packed layer fed by a norm holds W * s rounded to 4 bits, where s is the scale AWQ
    folded into that norm (orig_norm / new_norm). A search that corrupts its own restore copy
    (GPTQModel 7.6 in float32 on a CPU: README "AWQ") gives relative errors 0.47-4.5 here;
    bfloat16 and float64 give 0.10-0.32 (median 0.10)."""
    import torch
    from safetensors.torch import load_file

    orig = load_file(str(mha / "model.safetensors"))
    model, _ = R.load(awq_out[0], "cpu")
    state, errors = model.state_dict(), []
    for i, layer in enumerate(model.model.layers):
        for norm, mods in (("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                           ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"))):
            key = f"model.layers.{i}.{norm}.weight"
            s = orig[key] / state[key].float()
            for name in mods:
                mod = layer.get_submodule(name)
                with torch.no_grad():   # the packed layer's effective weight, [out, in]
                    w = mod(torch.eye(mod.in_features)).T / s.view(1, -1)
                ref = orig[f"model.layers.{i}.{name}.weight"].float()
                errors.append(float((w - ref).norm() / ref.norm()))
    assert len(errors) == 10 and sorted(errors)[5] < 0.25 and max(errors) < 0.45, errors


def test_awq_searches_in_the_dtype_it_is_given(awq_out, mha, tmp_path):
    """awq.dtype: auto is bfloat16 on a CPU (float16 matmuls are ~180x slower there); float16
    is honoured, and the two searches give different codes."""
    saved = lambda f: json.loads((f / "config.json").read_text())["dtype"]   # noqa: E731
    half, metrics = awq(mha, tmp_path, dtype="float16")
    assert (saved(awq_out[0]), saved(half)) == ("bfloat16", "float16")
    assert (awq_out[1]["step"]["dtype"], metrics["step"]["dtype"]) == ("bfloat16", "float16")   # recorded too
    assert metrics["record"]["chain"][0]["knobs"]["dtype"] == "float16"
    first, second = load_state(awq_out[0]), load_state(half)
    assert any((first[k] != second[k]).any() for k in first if k.endswith("qweight"))


def test_awq_is_deterministic(awq_out, mha, tmp_path):
    again, _ = awq(mha, tmp_path)
    first, second = load_state(awq_out[0]), load_state(again)
    assert first.keys() == second.keys()
    assert all((first[k] == second[k]).all() for k in first)
    assert (awq_out[0] / "config.json").read_text() == (again / "config.json").read_text()


@pytest.mark.parametrize("chains, variants, message", [
    ({"a": node(M, "awq", bits=8)}, {}, "compress.a: bits: Input should be 4, got 8"),
    ({"a": node(M, "awq"), "a+p": node("a", "prune")}, {}, "its input chain is quantized by 'a'; a quantizer ends a chain"),
    ({"g": node(M, "gptq"), "g+a": node("g", "awq")}, {}, "its input chain is quantized by 'g'; a quantizer ends a chain"),
    ({"a": node(M, "distill", bits=4)}, {}, "compress.a: unknown knob 'bits'"),
    ({"a": node(M, "awq")}, {"v": {"node": "a", "runtime": "ort_genai"}},
     "variants.v: the ort_genai runtime cannot build a awq (awq) checkpoint model; it takes ['gptq']"),
    ({"a": node(M, "awq")}, {"v": {"node": "a", "runtime": "llamacpp"}},
     "variants.v: the llamacpp runtime cannot build a awq (awq) checkpoint model; it takes float models only"),
])
def test_bad_awq_chains_are_one_line_errors(tmp_path, chains, variants, message):
    with pytest.raises(PipelineError) as exc:
        check_chains(tmp_path, chains, variants)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_awq_in_the_width_sweep_takes_4_bits_only(tmp_path):
    from ruamel.yaml import YAML

    from tests.test_lm_models import PARAMS

    raw = {**PARAMS, "quant": {**PARAMS["quant"], "methods": ["awq"], "bits": [4, 8]}, "variants": {}}
    path = tmp_path / "params.yaml"
    with path.open("w") as f:
        YAML(typ="safe", pure=True).dump(raw, f)
    from stages.entry import check_params
    with pytest.raises(PipelineError, match=r"quant \(awq, 8 bits\): bits: Input should be 4, got 8"):
        check_params.main(["--params", str(path), "--out", str(tmp_path / "checked")])
