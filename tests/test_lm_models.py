"""GPTQ through the generic LM stages on a tiny Llama on CPU (seconds): lm_source -> lm_compress
(a quant sweep node per width) -> lm_build (pytorch) -> lm_eval / lm_bench, the PyTorch
runtime's GPTQ kernels, and every bad knob or bad input stopping a stage before any model loads.

The tiny model (2 layers, hidden 64, a byte-level BPE trained here) is trained for a few
seconds until it has memorised ten short sentences, so accuracy and perplexity mean
something: a broken quantizer or a broken batching path changes them.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from ruamel.yaml import YAML

from stages.core.errors import PipelineError
from stages.core.files import dir_size_mb
from stages.entry import lm_bench, lm_build, lm_compress, lm_eval, lm_reference, lm_source
from stages.meters import lm_speed
from stages.runtimes import lm as runtimes, torch_lm as R
from stages.tasks import lambada as S
from tests.conftest import ROOT

PARAMS = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())
PAIRS = [("farmer", "baker"), ("doctor", "pilot"), ("singer", "waiter"), ("teacher", "sailor"),
         ("painter", "lawyer"), ("miner", "judge"), ("nurse", "tailor"), ("cook", "poet"),
         ("clerk", "guard"), ("smith", "monk")]
TEXTS = [f"The {w} met the {v} at noon, and later that day the {v} thanked the {w}" for w, v in PAIRS]
# calibration text: the same words, other sentences (never an evaluated text)
CALIB = [f"A {v} saw a {w} at dawn; the {w} waved to the {v}" for w, v in PAIRS]
WIDTHS = ["int8", "int4", "int2"]
ABSOLUTE = ("site-packages", "/tmp", "/work", str(Path.home()))
GPTQ = {"group_size": 64, "calib_size": 8, "calib_seq_len": 32, "threads": 1}
# small, fast settings over the repository's params (each stage reads only its own sections)
TEST = {"methods": {"gptq": GPTQ, "rtn": {"group_size": 64}},
        "eval_lm": {"k": 5, "limit": 0, "threads": 1},
        "bench_lm": {"threads": 1, "decode_tokens": 4, "prefill_tokens": 32, "speed_repeats": 1},
        "bootstrap": {"samples": 200, "seed": 0},
        "energy": {"method": "estimate", "idle_s": 0.0, "watts_per_core": 4.0}}


def write_params(folder: Path, name: str = "params.yaml", **sections) -> Path:
    """The repository's params.yaml with TEST's settings, then `sections`: a dict updates that
    section (a `methods.<m>` or `compress.<node>` entry is replaced whole), a scalar replaces it."""
    params = copy.deepcopy(PARAMS)
    for over in (TEST, sections):
        for section, values in over.items():
            if isinstance(values, dict) and isinstance(params.get(section), dict):
                params[section] = {**params[section], **copy.deepcopy(values)}
            else:
                params[section] = copy.deepcopy(values)
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        YAML(typ="safe", pure=True).dump(params, f)
    return path


def write_jsonl(path: Path, texts) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def absolute_paths(value) -> list[str]:
    """Every string in a JSON value that is, or contains, an absolute local path."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in absolute_paths(v)] + \
            [s for k in value for s in absolute_paths(k)]
    if isinstance(value, list):
        return [s for v in value for s in absolute_paths(v)]
    if isinstance(value, str) and (os.path.isabs(value) or any(a in value for a in ABSOLUTE)):
        return [value]
    return []


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices gain nothing from threads, and this machine's 2 cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def eager():
    """GPTQModel's TorchLinear (8/2-bit on CPU) torch.compiles its dequantization per layer:
    ~5 s a layer here, minutes for the tiny model. Same arithmetic run eagerly (the scores
    of the compiled and eager paths were checked equal once by hand)."""
    os.environ["TORCHDYNAMO_DISABLE"] = "1"   # lm_bench times each variant in a spawned process
    try:
        with torch._dynamo.config.patch(disable=True):
            yield
    finally:
        del os.environ["TORCHDYNAMO_DISABLE"]


def train_tiny(folder: Path, kv_heads: int = 2) -> Path:
    """The tiny Llama, trained and saved to folder (kv_heads: 4 gives every projection 64 outputs)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator((TEXTS + CALIB) * 5, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=256,
                         eos_token_id=0, pad_token_id=0, bos_token_id=0)
    model = LlamaForCausalLM(config)
    enc = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS + CALIB]
    ids, mask = S.pad_right(enc, 0)
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def source(hf: Path, out: Path, name: str = "tiny") -> Path:
    """lm_source on a local folder: the model's base node (a float32 HF folder + record.json)."""
    params = write_params(out.parent, f"params-{name}-source.yaml", models={name: {
        "architecture": "LlamaForCausalLM", "weights": {"source": "local", "path": str(hf)}}})
    lm_source.main(["--model", name, "--out", str(out), "--metrics", str(out.parent / f"{name}-source.json"),
                    "--params", str(params)])
    return out


BASES: dict[str, Path] = {}   # model -> its base folder (the `tiny` fixture's), for lm_reference


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny Llama trained until it has memorised TEXTS (~5 s), as lm_source writes its base."""
    root = tmp_path_factory.mktemp("tiny")
    BASES["tiny"] = source(train_tiny(root / "hf"), root / "tiny")
    return BASES["tiny"]


def compress(node: str, method: str, source_node: Path, out_dir: Path, bits: int | None = None,
             teacher: Path | None = None, calib=CALIB, **sections) -> tuple[Path, dict]:
    """lm_compress as DVC runs it: a quant sweep node (bits) or a `compress` table node."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(out_dir / f"calib-{node}.jsonl", calib)
    params = write_params(out_dir, f"params-{node}.yaml", **sections)
    lm_compress.main(["--node", node, "--method", method, "--input", str(source_node),
                      "--teacher", str(teacher or source_node), "--calib", str(data),
                      "--out", str(out_dir / node), "--metrics", str(out_dir / f"{node}.json"),
                      "--params", str(params)] + (["--bits", str(bits)] if bits else []))
    return out_dir / node, json.loads((out_dir / f"{node}.json").read_text())


def quantize(base: Path, out_dir: Path, method: str = "gptq", widths=WIDTHS, **knobs) -> dict:
    """{"int<bits>": (folder, metrics)}: one quant sweep node `tiny-<method><bits>` per width."""
    methods = {method: {**TEST["methods"].get(method, {}), **knobs}}
    return {w: compress(f"tiny-{method}{w[3:]}", method, base, out_dir, bits=int(w[3:]), methods=methods)
            for w in widths}


@pytest.fixture(scope="module")
def gptq(tiny, tmp_path_factory) -> dict:
    """The tiny model GPTQ-quantized at 8, 4 and 2 bits on CPU (~20 s)."""
    return quantize(tiny, tmp_path_factory.mktemp("gptq"))


def build(node: Path, tmp_path: Path, runtime: str = "pytorch", **sections) -> tuple[Path, dict]:
    """lm_build of a node for a runtime at the runtime's params defaults (a sweep variant)."""
    out = tmp_path / "builds" / f"{node.name}-{runtime}"
    params = write_params(tmp_path, f"params-build-{node.name}.yaml", **sections)
    metrics = tmp_path / f"build-{node.name}-{runtime}.json"
    lm_build.main(["--node", str(node), "--runtime", runtime, "--out", str(out), "--metrics", str(metrics),
                   "--params", str(params)])
    return out, json.loads(metrics.read_text())


def evaluate(node: Path, tmp_path: Path, runtime: str = "pytorch", texts=TEXTS, **eval_lm) -> dict:
    """lm_build then lm_eval on `texts`; the eval metrics with the build's under "build"."""
    folder, built = build(node, tmp_path, runtime)
    data = write_jsonl(tmp_path / "eval.jsonl", texts)
    out = tmp_path / f"eval-{node.name}-{runtime}.json"
    params = write_params(tmp_path, "params-eval.yaml", eval_lm=eval_lm)
    model = json.loads((node / "record.json").read_text())["model"]
    lm_reference.main(["--node", str(BASES[model]), "--data", str(data), "--params", str(params),
                       "--out", str(tmp_path / "reference" / f"{model}.npz")])
    lm_eval.main(["--build", str(folder), "--data", str(data), "--out", str(out), "--params", str(params),
                  "--reference", str(tmp_path / "reference")])
    return {**json.loads(out.read_text()), "build": built, "folder": folder}


def load_state(folder: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(folder / "model.safetensors")


# ---------------------------------------------------------------- source
def test_the_base_is_a_plain_float32_folder_with_its_record(tiny):
    record = json.loads((tiny / "record.json").read_text())
    assert record == {"model": "tiny", "architecture": "LlamaForCausalLM", "tied_head": False,
                      "local": "hf", "chain": []}
    assert json.loads((tiny.parent / "tiny-source.json").read_text())["record"] == record
    config = json.loads((tiny / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    for f in [*tiny.glob("*config.json"), tiny / "record.json"]:
        assert not absolute_paths(json.loads(f.read_text())), f
    a, b = load_state(tiny.parent / "hf"), load_state(tiny)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {t.dtype for t in b.values()} == {torch.float32}


# ---------------------------------------------------------------- GPTQ
def test_gptq_quantizes_at_8_4_2_bits(gptq, tiny):
    linear = {n for n, m in R.load(tiny, "cpu")[0].named_modules()
              if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    for name, (folder, m) in gptq.items():
        bits = int(name[3:])
        step = m["step"]
        assert (step["method"], step["bits"], step["knobs"]["bits"]) == ("gptq", bits, bits)
        assert step["knobs"]["group_size"] == 64 and step["calib_passages"] == 8
        assert m["record"]["chain"] == [{"method": "gptq", "knobs": step["knobs"]}]
        assert json.loads((folder / "record.json").read_text()) == m["record"]   # travels with it
        qc = json.loads((folder / "config.json").read_text())["quantization_config"]
        assert qc["bits"] == bits and qc["group_size"] == 64 and qc["quant_method"] == "gptq"
        assert qc.get("dataset") is None            # no calibration ids saved
        assert m["size_mb"] == pytest.approx(dir_size_mb(folder), abs=0.01) and m["compress_time_s"] > 0
        e = m["compress_energy"]
        assert e["unit"] == "run" and e["joules"] > 0  # GPTQ's window
        state = load_state(folder)
        assert {k.rsplit(".", 1)[0] for k in state if k.endswith(".qweight")} == linear
        assert "lm_head.weight" in state and state["lm_head.weight"].dtype == torch.float32
        for f in folder.glob("*config.json"):       # the tiny base lives under /tmp
            assert not absolute_paths(json.loads(f.read_text())), f
        # the tokenizer is the base's: calibration left no truncation in its saved state
        assert json.loads((folder / "tokenizer.json").read_text()) == \
            json.loads((tiny / "tokenizer.json").read_text())


def _dequantized(model) -> dict[str, torch.Tensor]:
    """Every quantized layer's effective weight [out, in]: its output for the identity."""
    out = {}
    with torch.inference_mode():
        for name, mod in model.named_modules():
            if hasattr(mod, "qweight"):
                out[name] = mod(torch.eye(mod.in_features)).T.float()
    return out


def test_gptq_weights_lie_on_the_grid_close_to_the_base(gptq, tiny, eager):
    base = {n: m.weight.detach() for n, m in R.load(tiny, "cpu")[0].named_modules()
            if isinstance(m, torch.nn.Linear)}
    errors = {}
    for name in WIDTHS:
        bits = int(name[3:])
        layers = _dequantized(R.load(gptq[name][0], "cpu")[0])
        assert len(layers) == 14
        errors[name] = {}
        for layer, w in layers.items():
            ref = base[layer]
            errors[name][layer] = float((w - ref).norm() / ref.norm())
            groups = w.reshape(w.shape[0], -1, 64)  # group_size 64 along the input
            most = max(len(torch.unique(g)) for row in groups for g in row)
            assert most <= 2 ** bits, (name, layer, most)
    assert max(errors["int8"].values()) < 0.03      # measured 0.008-0.015
    assert max(errors["int4"].values()) < 0.4       # measured 0.14-0.25
    for layer in errors["int8"]:                     # fewer bits, larger error, every layer
        assert errors["int8"][layer] < errors["int4"][layer] < errors["int2"][layer], layer


def test_gptq_is_deterministic(gptq, tiny, tmp_path):
    """Same params and seed: every saved tensor identical, bit for bit."""
    again = quantize(tiny, tmp_path / "again")
    for name in WIDTHS:
        a, b = load_state(gptq[name][0]), load_state(again[name][0])
        assert a.keys() == b.keys()
        differ = sorted(k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k]))
        assert not differ, f"{name}: {len(differ)}/{len(a)} tensors differ: {differ[:8]}"
        for f in ("config.json", "record.json"):
            assert (gptq[name][0] / f).read_text() == (again[name][0] / f).read_text()


def test_gptq_depends_on_the_seeded_calibration_draw(gptq, tiny, tmp_path):
    draw = lambda seed: sorted(random.Random(seed).sample(range(len(CALIB)), 8))  # noqa: E731
    seed = next(s for s in range(1, 10) if draw(s) != draw(0))
    other = quantize(tiny, tmp_path / "other", widths=["int4"], seed=seed)
    assert other["int4"][1]["step"]["knobs"]["seed"] == seed
    a, b = load_state(gptq["int4"][0]), load_state(other["int4"][0])
    assert any(not torch.equal(a[k], b[k]) for k in a if k.endswith(".qweight"))


# ---------------------------------------------------------------- evaluation
def test_eval_of_base_and_quantized_builds(gptq, tiny, tmp_path, eager):
    b = evaluate(tiny, tmp_path)
    res = {name: evaluate(folder, tmp_path) for name, (folder, _) in gptq.items()}
    assert b["record"]["chain"] == [] and b["record"]["runtime"] == "pytorch"
    assert b["num_examples"] == len(TEXTS) == len(b["hits"]) and b["k"] == 5 and b["threads"] == 1
    assert b["acc"] >= 0.9 and b["ppl"] < 1.1               # the tiny model memorised TEXTS
    assert b["build"]["size_mb"] == pytest.approx(dir_size_mb(b["folder"]), abs=0.01)
    for name, m in res.items():
        assert m["record"]["chain"][0]["knobs"]["bits"] == int(name[3:]) and m["num_examples"] == len(TEXTS)
        assert m["record"]["knobs"]["backend"] == {str(b): k for b, k in PARAMS["runtimes"]["pytorch"]["backend"].items()}
        # size is the folder on disk: smaller than the float base's
        assert m["build"]["size_mb"] == pytest.approx(dir_size_mb(m["folder"]), abs=0.01)
        assert m["build"]["size_mb"] < b["build"]["size_mb"]
        assert m["hits"].count("1") == round(m["acc"] * len(TEXTS))   # per example, for paired deltas
        for key in ("acc", "topk_acc", "topk_word_acc", "ppl"):
            lo, hi = m[f"{key}_ci95"]
            assert lo <= m[key] <= hi, (name, key)
    # quality follows the width: int8 ~ base; perplexity grows as bits shrink
    assert res["int8"]["acc"] == b["acc"] and res["int8"]["ppl"] == pytest.approx(b["ppl"], rel=1e-3)
    assert res["int8"]["ppl"] < res["int4"]["ppl"] < res["int2"]["ppl"]
    assert res["int4"]["acc"] >= b["acc"] - 0.1
    for m in [b, *res.values()]:  # energy of the scoring loop, per example, one window
        e = m["energy_eval"]
        assert e["unit"] == "example" and e["units"] == len(TEXTS) and e["windows"] == 1
        assert e["j_per_unit"] * e["units"] == pytest.approx(e["joules"]) and e["method"] == "estimate"


@pytest.mark.parametrize("variant", ["base", *WIDTHS])
def test_batching_and_the_naive_loop_give_identical_scores(gptq, tiny, variant, eager):
    """Per-example scores do not depend on batching, for the float and every GPTQ model: the
    PyTorch session's padded batches (what lm_eval runs) and torch_lm.score_all alike."""
    from stages.runtimes.lm.base import tokenizer
    from stages.tasks.scoring import encode

    folder = tiny if variant == "base" else gptq[variant][0]
    session = runtimes.get("pytorch").open(folder, 1, PARAMS["runtimes"]["pytorch"])
    reqs = encode(tokenizer(folder), TEXTS + CALIB, 256)
    assert len({len(r[0]) for r in reqs}) > 1        # batches really hold padding
    items = [(ids, n) for ids, n, _ in reqs]
    naive = [session.logits(ids)[len(ids) - n:] for ids, n in items]   # one example, full logits
    score = lambda tails: [S.score_continuation(torch.from_numpy(t), c, 5)   # noqa: E731
                           for t, (_, _, c) in zip(tails, reqs)]
    want = score(naive)
    for bs in (1, 8, 3):
        tails = session.tail_logits_many(items, batch_size=bs)
        assert max(float(np.abs(t - w).max()) for t, w in zip(tails, naive)) < 1e-4, bs
        got = score(tails)
        for key in ("greedy", "topk_first", "topk_word"):
            assert [s[key] for s in got] == [s[key] for s in want], (bs, key)
        assert [s["loglik"] for s in got] == pytest.approx([s["loglik"] for s in want], abs=1e-5, rel=1e-6)
    model, tok = R.load(folder, "cpu")
    with torch.inference_mode():
        runs = [R.score_all(model, reqs, R.pad_id(tok), bs, 5, one) for bs, one in
                [(1, False), (8, False), (3, False), (1, True)]]
    for other in runs:
        for key in ("greedy", "topk_first", "topk_word"):
            assert [s[key] for s in other] == [s[key] for s in want]
        assert [s["loglik"] for s in other] == pytest.approx([s["loglik"] for s in want], abs=1e-5, rel=1e-6)


# ---------------------------------------------------------------- speed
def test_bench_of_a_quantized_build(gptq, tmp_path, eager):
    folder, _ = build(gptq["int4"][0], tmp_path)
    data = write_jsonl(tmp_path / "eval.jsonl", TEXTS * 3)
    out = tmp_path / "bench" / "bench.json"   # a bench folder of its own, as metrics/lm/bench/<host>/
    lm_bench.main(["--build", str(folder), "--data", str(data), "--out", str(out),
                   "--params", str(write_params(tmp_path))])
    m = json.loads(out.read_text())
    assert m["record"]["runtime"] == "pytorch" and m["record"]["chain"][0]["knobs"]["bits"] == 4
    assert m["threads"] == 1 and m["machine"]["logical_cores"] >= 1
    assert "acc" not in m and "ppl" not in m          # speed only: the accuracy stage scores
    assert (m["decode_tokens"], m["prefill_tokens"]) == (4, 32)
    assert m["energy_decode"]["units"] == 4 and m["energy_prefill"]["units"] == 32   # speed_repeats=1
    assert m["energy_decode"]["j_per_unit"] * 4 == pytest.approx(m["energy_decode"]["joules"])
    assert m["tpot_p90_ms"] >= m["tpot_ms"] > 0 and m["ttft_ms"] > 0
    # timed in its own spawned process: that process's peak RSS, and the same run's read bandwidth
    assert 100 < m["peak_rss_mb"] < 8000 and m["bandwidth_gb_s"] > 0
    assert m["weight_bytes_per_token"] == runtimes.get("pytorch").weight_bytes_per_token(folder) > 0
    assert m["bandwidth_fraction"] == pytest.approx(
        m["decode_tokens_per_s"] * m["weight_bytes_per_token"] / (m["bandwidth_gb_s"] * 1e9))
    assert m["size_mb"] == pytest.approx(dir_size_mb(folder), abs=0.01)


class SlowTokenizer:
    """Wraps a tokenizer; every call costs 0.2 s."""

    def __init__(self, tok):
        self.tok, self.calls = tok, 0

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def __call__(self, *a, **kw):
        self.calls += 1
        time.sleep(0.2)
        return self.tok(*a, **kw)


BENCH = {"decode_tokens": 8, "prefill_tokens": 64, "speed_repeats": 3}


def estimate_meter():
    from stages.meters.energy import open_meter
    return open_meter({"method": "estimate", "idle_s": 0.0, "tdp_w": None, "watts_per_core": 4.0})


def test_speed_excludes_tokenization_and_decodes_exactly(tiny, monkeypatch):
    """stages/meters/lm_speed.py (the GPU set's and the kernel sweep's meter). Regression: the
    original project timed tokenization inside prefill tokens/s; and decoding must not stop at
    EOS (that would inflate tokens/s)."""
    model, tok = R.load(tiny, "cpu")
    slow = SlowTokenizer(tok)
    with torch.inference_mode():
        speed, energy = lm_speed.speeds(model, slow, TEXTS * 3, BENCH, estimate_meter())
    assert energy["energy_decode"]["unit"] == "token" and energy["energy_prefill"]["units"] == 64 * 3
    assert slow.calls == 1                                 # tokenized once, before any timing
    assert speed["prefill_tokens_per_s"] > 64 / 0.2 * 3    # far above what 0.2 s allows

    # make EOS the token greedy decoding emits first: an unforced generate stops at once
    prompt = tok("\n\n".join(TEXTS * 3), add_special_tokens=False, return_tensors="pt").input_ids[:, :32]
    with torch.inference_mode():
        first = int(model.generate(prompt, max_new_tokens=1, do_sample=False, pad_token_id=0)[0, -1])
        model.generation_config.eos_token_id = first
        assert model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0).shape[1] < 32 + 8
    new_tokens, forwards, real_generate = [], [], model.generate

    def generate(*a, **kw):
        out = real_generate(*a, **kw)
        new_tokens.append(out.shape[1] - a[0].shape[1])
        return out

    class OnceMeter:   # one call instead of warm-up + repeats; 0.5 s "each"
        def repeats(self, fn, repeats, units, unit, sync, warmup=1):
            fn()
            return None, [0.5], {"j_per_unit": 1.0}

    monkeypatch.setattr(model, "generate", generate)
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **kw: forwards.append(kw["input_ids"].shape)
                        or real_forward(*a, **kw))
    with torch.inference_mode():
        speed, _ = lm_speed.speeds(model, tok, TEXTS * 3, BENCH, OnceMeter())
    assert new_tokens == [8]                                 # exactly decode_tokens, EOS or not
    assert forwards[0] == (1, 64)                            # prefill: one batch-1 forward of 64
    assert speed == {"decode_tokens_per_s": 8 / 0.5, "prefill_tokens_per_s": 64 / 0.5}


# ---------------------------------------------------------------- bad params, bad inputs
def boom(*a, **kw):
    raise AssertionError("a model was loaded before the params were validated")


@pytest.fixture
def no_model_loads(monkeypatch):
    import transformers
    from gptqmodel import GPTQModel

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    monkeypatch.setattr(GPTQModel, "load", boom)


def run_compress(tmp_path: Path, knobs: dict, input: Path | None = None, method: str = "gptq",
                 calib: Path | None = None) -> None:
    """lm_compress of a `compress` node `q` (gptq with `knobs`) on tmp_path/q."""
    if input is None:
        input = tmp_path / "base"
        input.mkdir(exist_ok=True)
    params = write_params(tmp_path, compress={"q": {"model": "tiny", "input": "tiny", "method": "gptq", **knobs}})
    lm_compress.main(["--node", "q", "--method", method, "--input", str(input), "--teacher", str(input),
                      "--calib", str(calib or write_jsonl(tmp_path / "calib.jsonl", CALIB)),
                      "--out", str(tmp_path / "q"), "--metrics", str(tmp_path / "q.json"), "--params", str(params)])


@pytest.mark.parametrize("key, value, match", [
    ("bits", 5, "gptq: bits: Input should be 2, 3, 4 or 8, got 5"),
    ("group_size", -2, "gptq: group_size: Value error, a group is -1 .one group per row. or a positive"),
    ("group_size", 0, "gptq: group_size: Value error, a group is -1"),
    ("calib_size", 0, "gptq: calib_size"),
    ("calib_seq_len", 4, "gptq: calib_seq_len"),
    ("damp_percent", 1.5, "gptq: damp_percent"),
    ("desc_act", "maybe", "gptq: desc_act"),
    ("device", "tpu", "gptq: device"),
    ("threads", 0, "gptq: threads"),
    ("group_sise", 32, r"gptq: unknown knob 'group_sise' \(did you mean 'group_size'\?\)"),
])
def test_bad_gptq_knobs_fail_before_anything_is_read(tmp_path, no_model_loads, key, value, match):
    """An empty input folder: the knobs are checked before the input, the calibration or a model."""
    with pytest.raises(PipelineError, match=match) as exc:
        run_compress(tmp_path, {key: value})
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "q").exists() and not (tmp_path / "q.json").exists()


def test_a_node_run_with_another_method_is_refused(tmp_path, no_model_loads):
    with pytest.raises(PipelineError, match="compress.q.method is gptq, not --method rtn"):
        run_compress(tmp_path, {}, method="rtn")


def test_too_many_calibration_passages_fail_before_any_model_loads(tiny, tmp_path, no_model_loads):
    with pytest.raises(PipelineError, match="calib_size=10000 exceeds the 10 calibration passages"):
        run_compress(tmp_path, {"calib_size": 10_000}, input=tiny)
    assert not (tmp_path / "q").exists() and not (tmp_path / "q.json").exists()


def test_corrupt_calibration_fails_before_any_model_loads(tiny, tmp_path, no_model_loads):
    calib = write_jsonl(tmp_path / "calib.jsonl", CALIB)
    calib.write_text(calib.read_text() + '{"text": "trunc\n')
    with pytest.raises(PipelineError, match=r"calib.jsonl:11: corrupt JSON"):
        run_compress(tmp_path, {"calib_size": 2}, input=tiny, calib=calib)
    assert not (tmp_path / "q").exists()


def fake_build(tmp_path: Path) -> Path:
    """A built-variant folder holding only its record (nothing a runtime could load)."""
    folder = tmp_path / "build"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "record.json").write_text(json.dumps({"model": "m", "chain": [], "runtime": "pytorch",
                                                    "knobs": {"precision": "fp32", "backend": "auto"}}))
    return folder


def run_stage(stage, tmp_path: Path, params: Path, data: Path | None = None) -> None:
    data = data or write_jsonl(tmp_path / "eval.jsonl", TEXTS)
    stage.main(["--build", str(fake_build(tmp_path)), "--data", str(data),
                "--out", str(tmp_path / "out" / "m.json"), "--params", str(params)]   # its own folder, as metrics/*/bench/<host>/
               + (["--reference", str(tmp_path / "reference")] if stage is lm_eval else []))


@pytest.mark.parametrize("key, value", [("k", 0), ("limit", -1), ("threads", 0), ("limt", 2)])
def test_bad_eval_params_fail_before_any_model_loads(tmp_path, no_model_loads, key, value):
    with pytest.raises(PipelineError, match=f"eval_lm.{key}: ") as exc:
        run_stage(lm_eval, tmp_path, write_params(tmp_path, eval_lm={key: value}))
    assert "\n" not in str(exc.value) and not (tmp_path / "out" / "m.json").exists()


@pytest.mark.parametrize("key, value", [("threads", 0), ("decode_tokens", 1), ("prefill_tokens", 16),
                                        ("speed_repeats", 0), ("device", "cpu")])
def test_bad_bench_params_fail_before_any_model_loads(tmp_path, no_model_loads, key, value):
    with pytest.raises(PipelineError, match=f"bench_lm.{key}: ") as exc:
        run_stage(lm_bench, tmp_path, write_params(tmp_path, bench_lm={key: value}))
    assert "\n" not in str(exc.value) and not (tmp_path / "out" / "m.json").exists()


@pytest.mark.parametrize("stage", [lm_eval, lm_bench], ids=["lm_eval", "lm_bench"])
def test_truncated_eval_file_names_the_line(tmp_path, no_model_loads, stage):
    """Regression: a cut-off eval.jsonl gave 'is unreadable: <datasets error>', no line."""
    data = write_jsonl(tmp_path / "eval.jsonl", TEXTS)
    data.write_text(data.read_text()[:-25])          # the last record cut mid-string
    with pytest.raises(PipelineError, match=rf"eval.jsonl:{len(TEXTS)}: corrupt JSON") as exc:
        run_stage(stage, tmp_path, write_params(tmp_path, eval_lm={"limit": 2}), data)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("stage", [lm_eval, lm_bench], ids=["lm_eval", "lm_bench"])
def test_empty_eval_file_is_a_clear_error(tmp_path, no_model_loads, stage):
    data = tmp_path / "eval.jsonl"
    data.write_text("")
    with pytest.raises(PipelineError, match=r"evaluation file is empty: .*eval.jsonl$") as exc:
        run_stage(stage, tmp_path, write_params(tmp_path), data)
    assert "unreadable" not in str(exc.value)


@pytest.mark.parametrize("stage", [lm_eval, lm_bench], ids=["lm_eval", "lm_bench"])
def test_a_folder_without_a_record_is_one_line(tmp_path, no_model_loads, stage):
    (tmp_path / "plain").mkdir()
    with pytest.raises(PipelineError, match=r"no record.json in .*plain nor in int<bits>/ subfolders: not made by the LM stages"):
        stage.main(["--build", str(tmp_path / "plain"), "--data", str(write_jsonl(tmp_path / "e.jsonl", TEXTS)),
                    "--out", str(tmp_path / "m.json"), "--params", str(write_params(tmp_path))]
                   + (["--reference", str(tmp_path / "reference")] if stage is lm_eval else []))


def test_discover_orders_widths_and_ignores_stray_folders(tmp_path):
    for name in ("int2", "int8", "int4", "int4_old", "intro", "notes", "int16"):
        (tmp_path / name).mkdir()
        if name != "int16":                        # no config.json: not a model
            (tmp_path / name / "config.json").write_text("{}")
    assert list(R.discover(tmp_path)) == ["int8", "int4", "int2"]
    assert R.discover(tmp_path / "int4") == {"base": tmp_path / "int4"}
    with pytest.raises(PipelineError, match="int<bits>"):
        R.discover(tmp_path / "notes" / "missing")


# ---------------------------------------------------------------- source: the Hub
class Stop(Exception):
    pass


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_params(tmp_path: Path) -> Path:
    return write_params(tmp_path, models={"hubbed": {"architecture": "LlamaForCausalLM", "weights": {
        "source": "hub", "id": "org/tiny", "revision": COMMIT}}})


def run_source(tmp_path: Path) -> None:
    lm_source.main(["--model", "hubbed", "--out", str(tmp_path / "b"), "--metrics", str(tmp_path / "b.json"),
                    "--params", str(hub_params(tmp_path))])


def test_hub_source_pins_the_revision_and_refuses_remote_code(tmp_path, monkeypatch):
    import transformers

    calls = {}

    def record(kind):
        def from_pretrained(name, *a, **kw):
            calls[kind] = (name, a, kw)
            if kind == "model":
                raise Stop
            return object()
        return from_pretrained

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", record("model"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", record("tokenizer"))
    with pytest.raises(Stop):
        run_source(tmp_path)
    assert set(calls) == {"model", "tokenizer"}
    for kind, (name, args, kw) in calls.items():
        assert name == "org/tiny" and not args, kind
        assert kw.get("revision") == COMMIT, kind
        assert kw.get("trust_remote_code") is not True, kind
    assert calls["model"][2].get("use_safetensors") is True
    assert not (tmp_path / "b").exists()


def test_hub_export_is_plain_float32_without_local_paths(tiny, tmp_path, monkeypatch):
    """Stand the tiny model (saved under /tmp) in for the Hub: the export saves no path."""
    import transformers

    real_model = transformers.AutoModelForCausalLM.from_pretrained
    real_tok = transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda name, **kw: real_model(tiny, dtype=kw["dtype"]))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda name, **kw: real_tok(tiny))
    run_source(tmp_path)
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert "quantization_config" not in config
    for f in [*(tmp_path / "b").glob("*config.json"), tmp_path / "b" / "record.json"]:
        assert not absolute_paths(json.loads(f.read_text())), f
    record = json.loads((tmp_path / "b" / "record.json").read_text())
    assert (record["model"], record["hub_id"], record["commit"]) == ("hubbed", "org/tiny", COMMIT)
    a, b = load_state(tiny), load_state(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {t.dtype for t in b.values()} == {torch.float32}


def test_the_declared_architecture_must_be_the_loaded_one(tiny, tmp_path):
    params = write_params(tmp_path, models={"tiny": {"architecture": "Qwen2ForCausalLM", "weights": {
        "source": "local", "path": str(tiny)}}})
    with pytest.raises(PipelineError, match="models.tiny.architecture is Qwen2ForCausalLM, but the weights "
                                            "load as LlamaForCausalLM"):
        lm_source.main(["--model", "tiny", "--out", str(tmp_path / "b"), "--metrics", str(tmp_path / "b.json"),
                        "--params", str(params)])
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------- source: a package's GGUF
def fake_package(tmp_path: Path, monkeypatch, gguf: bytes | None) :
    """Point importlib's find_spec for a package `fake_pkg` at a folder holding `gguf` (if given)."""
    from stages.models import lm_source as L

    pkg = tmp_path / "fake_pkg"
    pkg.mkdir()
    if gguf is not None:
        (pkg / "m.gguf").write_bytes(gguf)
    real = L.importlib.util.find_spec
    monkeypatch.setattr(L.importlib.util, "find_spec", lambda name, *a: types.SimpleNamespace(
        submodule_search_locations=[str(pkg)]) if name == "fake_pkg" else real(name, *a))
    return L.PackageSource(source="package", package="fake_pkg", file="m.gguf",
                           sha256=hashlib.sha256(b"the real bytes").hexdigest())


def test_tampered_package_gguf_is_a_checksum_mismatch(tmp_path, monkeypatch):
    from stages.models import lm_source as L

    src = fake_package(tmp_path, monkeypatch, b"GGUF" + b"\0" * 1000)
    with pytest.raises(PipelineError, match="checksum mismatch"):
        L.package_gguf(src, tmp_path)
    (tmp_path / "fake_pkg" / "m.gguf").write_bytes(b"the real bytes")
    assert L.package_gguf(src, tmp_path) == tmp_path / "fake_pkg" / "m.gguf"


def test_missing_package_gguf_is_a_clear_error(tmp_path, monkeypatch):
    from stages.models import lm_source as L

    src = fake_package(tmp_path, monkeypatch, None)
    with pytest.raises(PipelineError, match="package 'fake_pkg' has no m.gguf"):
        L.package_gguf(src, tmp_path)


def test_installed_package_ggufs_match_their_pins(tmp_path):
    """Every `models` entry read from a package file (not assembled) is the file pinned."""
    from stages.models import lm_source as L

    entries = [e["weights"] for e in PARAMS["models"].values()
               if e["weights"]["source"] == "package" and not e["weights"].get("assemble")]
    installed = [e for e in entries if L.importlib.util.find_spec(e["package"]) is not None]
    if not installed:
        pytest.skip("no packaged model is installed")
    for e in installed:
        assert L.package_gguf(L.PackageSource(**e), tmp_path).name == e["file"]


# ---------------------------------------------------------------- GPTQ kernels
def test_kernel_table_matches_the_installed_gptqmodel():
    """stages/schema/kernels.py restates GPTQModel's kernel classes (so check_params needs no
    torch import): a GPTQModel upgrade that changes a kernel's widths or devices fails here."""
    from gptqmodel.nn_modules.qlinear.machete import MacheteLinear
    from gptqmodel.nn_modules.qlinear.torch_int8 import TorchInt8Linear
    from gptqmodel.utils.backend import BACKEND
    from gptqmodel.utils.importer import AUTO_BACKEND_KERNEL_MAPPING
    from gptqmodel.quantization.config import FORMAT, METHOD
    from stages.schema.kernels import KERNELS

    classes = {b.value: c for b, c in AUTO_BACKEND_KERNEL_MAPPING[METHOD.GPTQ][FORMAT.GPTQ_V2].items()}
    classes[BACKEND.GPTQ_TORCH_INT8.value] = TorchInt8Linear
    classes[BACKEND.GPTQ_MACHETE.value] = MacheteLinear   # selectable by name, not by AUTO for GPTQ v2
    for name, k in KERNELS.items():
        cls = classes[name]
        devices = {d.value for d in cls.SUPPORTS_DEVICES}
        assert cls.__name__ == k.layer, name
        assert k.bits == set(cls.SUPPORTS_BITS) & {2, 3, 4, 8}, name
        assert k.devices <= (devices if "all" not in devices else {"cpu", "cuda"}), name


@pytest.mark.parametrize("width, kernel", [("int8", "gptq_torch_int8"), ("int4", "gptq_torch_aten"),
                                           ("int4", "gptq_torch_fused"), ("int2", "gptq_torch_int8")])
def test_each_cpu_kernel_runs_its_width_and_scores_like_the_reference(gptq, width, kernel, eager):
    """The PyTorch runtime's `backend` knob: the layers really are the asked kernel's, and its
    scores match TorchLinear's (the reference unpacking) on the memorised texts: a kernel that
    computes garbage fails."""
    from stages.runtimes.lm.base import tokenizer
    from stages.schema.kernels import KERNELS
    from stages.tasks.scoring import encode, score_session

    folder = gptq[width][0]
    reqs = encode(tokenizer(folder), TEXTS, 256)
    results = {}
    for name in ("gptq_torch", kernel):
        session = runtimes.get("pytorch").open(folder, 1, {"backend": {int(width[3:]): name}})
        assert R.kernels(session.model) == {"Linear": 1, KERNELS[name].layer: 14}   # lm_head stays float
        results[name] = S.aggregate(score_session(session, reqs, 5), 5)
    ref, got = results["gptq_torch"], results[kernel]
    assert abs(got["acc"] - ref["acc"]) <= 0.1   # one of ten texts may flip
    assert got["ppl"] == pytest.approx(ref["ppl"], rel=0.05)


@pytest.mark.parametrize("backend, message", [
    ({4: "gptq_marlin"}, "kernel gptq_marlin runs on ['cuda'], not cpu"),
    ({8: "gptq_torch_aten"}, "kernel gptq_torch_aten cannot run 8-bit weights"),
    ("gptq_marlinn", "unknown GPTQ kernel 'gptq_marlinn'; choose from ['auto', 'gptq_torch'"),
])
def test_a_kernel_the_cpu_runtime_cannot_run_stops_the_build_before_any_work(tmp_path, no_model_loads,
                                                                             backend, message):
    params = write_params(tmp_path, variants={"v": {"node": "tiny", "runtime": "pytorch", "backend": backend}})
    (tmp_path / "node").mkdir()
    with pytest.raises(PipelineError) as exc:
        lm_build.main(["--node", str(tmp_path / "node"), "--runtime", "pytorch", "--variant", "v",
                       "--out", str(tmp_path / "b"), "--metrics", str(tmp_path / "b.json"), "--params", str(params)])
    assert str(exc.value).startswith("pytorch: backend: ") and message in str(exc.value)
    assert "\n" not in str(exc.value) and not (tmp_path / "b").exists()


def test_a_kernel_that_falls_back_is_an_error(gptq, monkeypatch):
    """GPTQModel must not silently pick another kernel than the one asked for."""
    from stages.schema import kernels
    monkeypatch.setitem(kernels.KERNELS, "gptq_torch_aten",
                        kernels.Kernel("SomeOtherLinear", frozenset({4}), frozenset({"cpu"})))
    with pytest.raises(PipelineError, match="asked for kernel gptq_torch_aten but the layers run"):
        R.load(gptq["int4"][0], "cpu", "gptq_torch_aten")
    with pytest.raises(PipelineError, match="asked for kernel gptq_torch_aten but the layers run"):
        runtimes.get("pytorch").open(gptq["int4"][0], 1, {"backend": {4: "gptq_torch_aten"}})


def test_the_kernel_sweep_times_every_kernel_that_runs_a_width(gptq, eager):
    """stages/meters/kernel_sweep.py: a kernel that cannot run a width is reported, not timed."""
    from stages.meters.kernel_sweep import sweep

    cfg = {"device": "cpu", "sweep": {"kernels": ["gptq_torch", "gptq_torch_aten"], "decode_tokens": 2,
                                      "prefill_tokens": 8, "repeats": 1}}
    int4 = sweep(gptq["int4"][0], 4, TEXTS, cfg, estimate_meter())
    assert int4["gptq_torch_aten"]["decode_tokens_per_s"] > 0 and int4["gptq_torch"]["prefill_tokens_per_s"] > 0
    int8 = sweep(gptq["int8"][0], 8, TEXTS, {**cfg, "sweep": {**cfg["sweep"], "kernels": ["gptq_torch_aten"]}},
                 estimate_meter())
    assert "unsupported" in int8["gptq_torch_aten"]
