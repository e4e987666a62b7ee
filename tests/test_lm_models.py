"""Quantize and evaluate a tiny random Llama on CPU (seconds), and every bad-param error."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import yaml

from stages import lm_eval, lm_export, lm_quantize, lm_speed
from stages.common import PipelineError, dir_size_mb
from tests.conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
TEXTS = [f"The {w} met the {v} at noon, and later that day the {v} thanked the {w}"
         for w, v in [("farmer", "baker"), ("doctor", "pilot"), ("singer", "waiter"),
                      ("teacher", "sailor"), ("painter", "lawyer"), ("miner", "judge"),
                      ("nurse", "tailor"), ("cook", "poet"), ("clerk", "guard"), ("smith", "monk")]]


def write_params(tmp_path: Path, section: str, **values) -> Path:
    params = json.loads(json.dumps(PARAMS))
    params[section].update(values)
    p = tmp_path / f"params-{section}.yaml"
    p.write_text(yaml.safe_dump(params))
    return p


def write_jsonl(path: Path, texts) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A random 2-layer Llama (hidden 64) with a byte-level BPE tokenizer trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny") / "base"
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TEXTS * 5, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=0, pad_token_id=0, bos_token_id=0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gptq(tiny, tmp_path_factory):
    """The tiny model GPTQ-quantized at 8, 4 and 2 bits on CPU."""
    tmp = tmp_path_factory.mktemp("gptq")
    calib = write_jsonl(tmp / "calib.jsonl", [t.upper() + " " + t for t in TEXTS])
    params = write_params(tmp, "quant", bits=[8, 4, 2], calib_size=8, calib_seq_len=32, device="cpu")
    lm_quantize.main(["--base", str(tiny), "--calib", str(calib), "--out", str(tmp / "gptq"),
                      "--metrics", str(tmp / "quantize.json"), "--params", str(params)])
    return tmp


def eval_cfg(**over):
    cfg = dict(PARAMS["eval_lm"], limit=0, batch_size=8, decode_tokens=8, prefill_tokens=64,
               speed_repeats=1, device="cpu")
    cfg.update(over)
    return cfg


def test_gptq_quantizes_at_8_4_2_bits(gptq):
    metrics = json.loads((gptq / "quantize.json").read_text())
    assert list(metrics) == ["int8", "int4", "int2"]
    for name, m in metrics.items():
        folder = gptq / "gptq" / name
        config = json.loads((folder / "config.json").read_text())
        assert config["quantization_config"]["bits"] == m["bits"] == int(name[3:])
        assert config["quantization_config"].get("dataset") is None  # no calibration ids saved
        assert m["size_mb"] == pytest.approx(dir_size_mb(folder), abs=0.01) and m["quant_time_s"] > 0


def test_eval_of_quantized_folder(gptq, tmp_path):
    data = write_jsonl(tmp_path / "eval.jsonl", TEXTS)
    params = write_params(tmp_path, "eval_lm", **eval_cfg())
    lm_eval.main(["--models", str(gptq / "gptq"), "--data", str(data), "--out", str(tmp_path / "m.json"),
                  "--params", str(params)])
    res = json.loads((tmp_path / "m.json").read_text())
    assert list(res) == ["int8", "int4", "int2"]
    for name, m in res.items():
        assert all(isinstance(v, (int, float)) for v in m.values())
        assert m["bits"] == int(name[3:]) and m["num_examples"] == len(TEXTS)
        # regression: size is the folder on disk, not the in-memory footprint
        assert m["size_mb"] == pytest.approx(dir_size_mb(gptq / "gptq" / name), abs=1e-3)


def test_batch_size_and_naive_loop_give_identical_scores(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(tiny), AutoModelForCausalLM.from_pretrained(tiny).eval()
    reqs = lm_eval.encode_examples(tok, TEXTS, 256)
    with torch.inference_mode():
        runs = [lm_eval.score_all(model, reqs, 0, bs, 5, naive) for bs, naive in
                [(1, False), (8, False), (1, True)]]
    for other in runs[1:]:
        assert [s["greedy"] for s in other] == [s["greedy"] for s in runs[0]]
        assert [s["topk_word"] for s in other] == [s["topk_word"] for s in runs[0]]
        assert [s["loglik"] for s in other] == pytest.approx([s["loglik"] for s in runs[0]], abs=1e-4)


def test_speed_excludes_tokenization_and_decodes_exactly(tiny):
    """Regression: the original project timed tokenization inside prefill tokens/s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(tiny), AutoModelForCausalLM.from_pretrained(tiny).eval()
    slow_calls = []

    class SlowTokenizer:  # every tokenization costs 0.2 s
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, *a, **kw):
            slow_calls.append(1)
            time.sleep(0.2)
            return tok(*a, **kw)

    with torch.inference_mode():
        speed = lm_speed.speeds(model, SlowTokenizer(), TEXTS * 3, eval_cfg(prefill_tokens=64))
    assert len(slow_calls) == 1                          # tokenized once, before any timing
    assert speed["prefill_tokens_per_s"] > 64 / 0.2 * 3  # far above what a 0.2 s tokenization allows
    assert speed["decode_tokens_per_s"] > 0


def test_median_time_waits_for_queued_device_work():
    """On CUDA, kernels run asynchronously: the clock must be read only after sync()."""
    events = []
    median = lm_speed.median_time(lambda: events.append("run"), 3, lambda: events.append("sync"))
    assert median >= 0
    assert events == ["run"] + ["sync", "run", "sync"] * 3   # warm-up untimed; each timed run fenced


@pytest.mark.parametrize("section, key, value, match", [
    ("quant", "bits", 5, "quant.bits"),
    ("quant", "bits", [4, 4], "quant.bits"),
    ("quant", "bits", [8, 16], "quant.bits"),
    ("quant", "group_size", 0, "group_size"),
    ("quant", "group_size", -2, "group_size"),
    ("quant", "calib_size", 10_000, "exceeds"),
    ("quant", "damp_percent", 1.5, "damp_percent"),
    ("quant", "device", "tpu", "quant.device"),
])
def test_bad_quant_params_fail_before_any_model_loads(tmp_path, monkeypatch, section, key, value, match):
    import transformers

    def boom(*a, **kw):
        raise AssertionError("a model was loaded before the params were validated")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", boom)
    calib = write_jsonl(tmp_path / "calib.jsonl", TEXTS)
    (tmp_path / "base").mkdir()
    with pytest.raises(PipelineError, match=match):
        lm_quantize.main(["--base", str(tmp_path / "base"), "--calib", str(calib), "--out",
                          str(tmp_path / "q"), "--metrics", str(tmp_path / "q.json"),
                          "--params", str(write_params(tmp_path, section, **{key: value}))])
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("key, value", [("k", 0), ("limit", -1), ("batch_size", 0),
                                        ("device", "tpu"), ("threads", 0)])
def test_bad_eval_params_fail_before_any_model_loads(tiny, tmp_path, monkeypatch, key, value):
    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **kw: pytest.fail("model loaded"))
    data = write_jsonl(tmp_path / "eval.jsonl", TEXTS)
    with pytest.raises(PipelineError, match=f"eval_lm.{key}"):
        lm_eval.main(["--models", str(tiny), "--data", str(data), "--out", str(tmp_path / "m.json"),
                      "--params", str(write_params(tmp_path, "eval_lm", **{key: value}))])


def test_bad_llm_source(tmp_path, monkeypatch):
    with pytest.raises(PipelineError, match="llm.source"):
        lm_export.main(["--out", str(tmp_path / "b"),
                        "--params", str(write_params(tmp_path, "llm", source="ollama"))])
    assert not (tmp_path / "b").exists()


def test_discover_orders_widths_and_ignores_stray_folders(tmp_path):
    for name in ("int2", "int8", "int4", "int4_old", "intro", "notes"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    assert list(lm_eval.discover(tmp_path)) == ["int8", "int4", "int2"]
    assert list(lm_eval.discover(tmp_path / "int4")) == ["base"]
    with pytest.raises(PipelineError, match="int<bits>"):
        lm_eval.discover(tmp_path / "notes" / "missing")
