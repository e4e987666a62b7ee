"""The text classifier family on a tiny random BERT (seconds): data splits disjoint on
content, deterministic fine-tuning, structured and magnitude pruning, distillation, every
runtime and precision, scoring with intervals, the report's goal, and the params' checks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.core.errors import PipelineError
from stages.datasets import topics
from stages.methods import cls_distill, cls_prune
from stages.methods.cls_train import fit, predict
from stages.models import encoder
from stages.reporting import cls as C
from stages.runtimes import cls as runtimes
from stages.schema import params as P
from stages.tasks.classify import paired, score

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the a market shares bank film award star vote party minister match goal team phone web chip".split()
LABELS = ["business", "entertainment", "politics", "sports", "tech"]
TRAIN = {"epochs": 2, "lr": 3e-3, "batch_size": 8, "weight_decay": 0.0, "threads": 1}


def tiny(tmp: Path) -> Path:
    """A 2-layer BERT classifier (4 heads of 8, FFN 64) with a word-level vocabulary, saved."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])})
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, num_labels=len(LABELS),
                     id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    model = BertForSequenceClassification(cfg).eval()
    out = tmp / "node"
    encoder.save(model, tok, out)
    return out


def recs(n: int, seed: int = 0) -> list[dict]:
    """Texts whose label is readable from their words (the label's two keywords lead)."""
    rng = np.random.default_rng(seed)
    keys = {lab: WORDS[2 + 3 * i: 5 + 3 * i] for i, lab in enumerate(LABELS)}
    out = []
    for i in range(n):
        lab = LABELS[i % len(LABELS)]
        words = list(rng.choice(keys[lab], 2)) + list(rng.choice(WORDS[:2], 2))
        out.append({"text": " ".join(words), "label": lab, "id": f"t{i}"})
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Path:
    """The tiny classifier, trained (its logits separate the labels, as a real node's do)."""
    folder = tiny(tmp_path_factory.mktemp("tiny"))
    model, tok = encoder.load(folder)
    fit(model, tok, recs(60), {n: i for i, n in enumerate(LABELS)}, TRAIN, 16, seed=0, epochs=8)
    encoder.save(model, tok, folder)
    return folder


def texts_logits(folder: Path, texts: list[str]) -> np.ndarray:
    model, tok = encoder.load(folder)
    return predict(model, tok, texts, 16)


# ---------------------------------------------------------------- data
def test_bbc_splits_are_disjoint_on_content_and_seeded():
    ex = topics.bbc_examples(topics.corpus_root(), "headline")
    parts = topics.split(ex, 0, [0.7, 0.1, 0.2])
    topics.check_disjoint(parts)
    seen = [{topics.normalized(r["text"]) for r in parts[s]} for s in topics.SPLITS]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sum(map(len, parts.values())) == len({topics.normalized(r["text"]) for r in ex}) - \
        sum(1 for k, labs in _labels(ex).items() if len(labs) > 1)
    assert topics.split(ex, 0, [0.7, 0.1, 0.2]) == parts and topics.split(ex, 1, [0.7, 0.1, 0.2]) != parts
    assert topics.label_names(parts) == LABELS and 300 < len(parts["test"]) < 520


def _labels(ex):
    out = {}
    for r in ex:
        out.setdefault(topics.normalized(r["text"]), set()).add(r["label"])
    return out


def test_a_repeated_text_lands_in_one_split_and_a_contradicted_one_is_dropped():
    ex = [{"text": "Same Words", "label": "a", "id": "1"}, {"text": "same  words", "label": "a", "id": "2"},
          {"text": "clash", "label": "a", "id": "3"}, {"text": "Clash", "label": "b", "id": "4"}]
    parts = topics.split(ex, 0, [0.5, 0.25, 0.25])
    kept = [r["id"] for p in parts.values() for r in p]
    assert kept == ["1"]
    with pytest.raises(PipelineError, match="is in both train and test"):
        topics.check_disjoint({"train": [ex[0]], "val": [], "test": [ex[1]]})


@pytest.mark.parametrize("line, match", [
    ("not json", r":2: not JSON"), ('{"text": "", "label": "a"}', ":2: expected"),
    ('{"text": "x"}', ":2: expected"), ('{"text": "x", "label": true}', ":2: expected")])
def test_a_bad_local_line_is_one_error_naming_it(tmp_path, line, match):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"text": "fine", "label": "a"}\n' + line + "\n")
    with pytest.raises(PipelineError, match=match) as err:
        topics.local_examples(f)
    assert "\n" not in str(err.value) and str(f) in str(err.value)


def test_a_test_label_missing_from_train_is_an_error():
    parts = {"train": [{"text": "x", "label": "a"}, {"text": "y", "label": "b"}], "val": [],
             "test": [{"text": "z", "label": "c"}]}
    with pytest.raises(PipelineError, match=r"labels \['c'\] occur in test but not in train"):
        topics.label_names(parts)


@pytest.fixture
def tweeteval(tmp_path, monkeypatch):
    """TweetEval emotion's published layout, served locally: mapping.txt ('<id>\\t<label>' lines,
    no final newline), <split>_text.txt (a tweet a line) and <split>_labels.txt (an id a line)."""
    import hashlib

    from tests.http_server import serve

    root = tmp_path / "www"
    root.mkdir()
    files = {"mapping.txt": "0\tanger\n1\tjoy\n2\toptimism\n3\tsadness",
             "train_text.txt": "so angry today \nwhat a lovely day \nthings will get better \n",
             "train_labels.txt": "0\n1\n2\n",
             "val_text.txt": "I miss you \n", "val_labels.txt": "3\n",
             "test_text.txt": "What a lovely day\nfurious at the bus \n", "test_labels.txt": "1\n0\n"}
    for name, text in files.items():
        (root / name).write_text(text)
    url, httpd, _ = serve(root)
    monkeypatch.setattr(topics, "TWEETEVAL", url + "/")
    monkeypatch.setattr(topics, "TWEET_FILES", {n: hashlib.sha256(t.encode()).hexdigest() for n, t in files.items()})
    yield root
    httpd.shutdown()


def test_official_tweet_emotion_keeps_its_splits_and_drops_a_repeat(tweeteval, tmp_path):
    parts = topics.official(tmp_path / "dl")
    assert [r["label"] for r in parts["train"]] == ["anger", "joy", "optimism"]
    assert [r["text"] for r in parts["test"]] == ["furious at the bus"]   # "What a lovely day" is in train
    assert parts["val"][0] == {"text": "I miss you", "label": "sadness", "id": "tweeteval:val/1"}
    topics.check_disjoint(parts)


def test_official_checksum_mismatch_is_one_line(tweeteval, tmp_path, monkeypatch):
    monkeypatch.setitem(topics.TWEET_FILES, "val_labels.txt", "0" * 64)
    with pytest.raises(PipelineError, match="checksum mismatch") as err:
        topics.official(tmp_path / "dl")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- training and methods
def test_fine_tuning_learns_and_is_bit_reproducible(tmp_path):
    data, label2id, fresh = recs(60), {n: i for i, n in enumerate(LABELS)}, tiny(tmp_path)
    states = []
    for _ in range(2):
        model, tok = encoder.load(fresh)
        fit(model, tok, data, label2id, TRAIN, 16, seed=3, epochs=8)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(np.array_equal(states[0][k].numpy(), states[1][k].numpy()) for k in states[0])
    acc = np.mean(predict(model, tok, [r["text"] for r in data], 16).argmax(1) == [label2id[r["label"]] for r in data])
    assert acc > 0.9   # the keywords decide the label: a model that did not learn scores ~0.2


def test_structured_pruning_shrinks_and_round_trips(node, tmp_path):
    model, tok = encoder.load(node)
    before = sum(p.numel() for p in model.parameters())
    detail = cls_prune.prune_structured(model, 0.5, 0.5)
    assert detail == {"heads_removed": 4, "ffn_kept": 32}
    layer = encoder.layers(model)[0]
    assert layer.attention.self.query.out_features == 16 and layer.intermediate.dense.out_features == 32
    assert sum(p.numel() for p in model.parameters()) < before
    encoder.save(model, tok, tmp_path / "pruned")
    texts = ["market bank the", "vote party a"]
    assert np.allclose(texts_logits(tmp_path / "pruned", texts), predict(model, tok, texts, 16), atol=1e-6)


def test_pruning_nothing_changes_nothing(node):
    model, tok = encoder.load(node)
    texts = ["film star", "chip web phone"]
    ref = predict(model, tok, texts, 16)
    cls_prune.prune_structured(model, 0.0, 0.0)
    assert np.allclose(predict(model, tok, texts, 16), ref, atol=1e-6)


def test_magnitude_pruning_keeps_its_zeros_through_fine_tuning(node):
    model, tok = encoder.load(node)
    masked = cls_prune.prune_magnitude(model, 0.5)
    fit(model, tok, recs(20), {n: i for i, n in enumerate(LABELS)}, TRAIN, 16, seed=0, epochs=1)
    assert cls_prune.finalize(masked) == pytest.approx(0.5, abs=0.01)


def test_the_student_keeps_evenly_spaced_teacher_layers(node):
    teacher, _ = encoder.load(node)
    student, kept = cls_distill.student(teacher, 1)
    assert kept == [0] and len(encoder.layers(student)) == 1 and student.config.num_hidden_layers == 1
    t, s = encoder.layers(teacher)[0], encoder.layers(student)[0]
    assert np.array_equal(t.output.dense.weight.detach().numpy(), s.output.dense.weight.detach().numpy())
    with pytest.raises(PipelineError, match="layers must be between 1 and 1"):
        cls_distill.student(teacher, 2)


# ---------------------------------------------------------------- runtimes
@pytest.mark.parametrize("runtime, precision", [
    ("pytorch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8_dynamic"), ("onnxruntime", "int8_static"),
    ("openvino", "fp32"), ("openvino", "fp16"), ("openvino", "int8_static")])
def test_every_runtime_builds_and_scores_like_pytorch(node, tmp_path, runtime, precision):
    _, tok = encoder.load(node)
    texts = [r["text"] for r in recs(16, seed=1)]
    calib = [encoder.encode(tok, [t], 16) for t in texts[:8]]
    rt = runtimes.get(runtime)
    rt.build(node, tmp_path / "v", precision, calib)
    got = rt.open(tmp_path / "v", 1).logits(encoder.encode(tok, texts, 16))
    ref = texts_logits(node, texts)
    assert got.shape == ref.shape and np.isfinite(got).all()
    tol = {"fp32": 1e-4, "fp16": 5e-3}.get(precision, 0.25 * np.abs(ref).max())   # int8: coarse at 32 wide
    assert np.abs(got - ref).max() < tol, (runtime, precision, np.abs(got - ref).max())
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 15 / 16
    assert rt.size_mb(tmp_path / "v") > 0


def test_a_corrupt_model_file_is_one_line_naming_it(node, tmp_path):
    for name in ("onnxruntime", "openvino"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / ("model.onnx" if name == "onnxruntime" else "model.xml")).write_text("garbage")
        with pytest.raises(PipelineError, match="cannot load") as err:
            runtimes.get(name).open(folder, 1)
        assert "\n" not in str(err.value) and str(folder) in str(err.value)
    with pytest.raises(PipelineError, match="unknown classifier runtime 'tflite'"):
        runtimes.get("tflite")


# ---------------------------------------------------------------- scoring and report
def test_scores_and_paired_difference_by_hand():
    s = score([0, 0, 1, 1, 2], [0, 1, 1, 1, 2], 3, 200, 0)
    assert s["acc"] == pytest.approx(0.8) and s["num_examples"] == 5
    # F1: class 0 = 2/3 (p 1, r 1/2), class 1 = 0.8 (p 2/3, r 1), class 2 = 1
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    assert s["acc_ci95"][0] <= 0.8 <= s["acc_ci95"][1]
    d = paired([1, 1, 0, 1], [1, 0, 0, 0], 200, 0)
    assert d["delta_acc"] == pytest.approx(0.5) and d["delta_acc_ci95"][0] >= 0.0
    with pytest.raises(PipelineError, match="paired scoring"):
        paired([1, 0], [1], 10, 0)


def row(node, runtime, precision, size, ms, correct):
    return {"node": node, "runtime": runtime, "precision": precision, "size_mb": size, "latency_ms_median": ms,
            "correct": correct, "predictions": correct}


def test_goal_needs_size_speed_and_the_paired_lower_bound():
    ok = [1] * 200
    rows = {"fp32-pytorch": row("fp32", "pytorch", "fp32", 90.0, 10.0, ok),
            "fp32-onnxruntime": row("fp32", "onnxruntime", "fp32", 90.0, 6.0, ok),
            "small-fast": row("d", "onnxruntime", "int8_static", 14.0, 1.9, ok),
            "small-slow": row("d", "onnxruntime", "int8_dynamic", 14.0, 3.0, ok),
            "small-wrong": row("e", "onnxruntime", "int8_static", 14.0, 1.0, [1] * 150 + [0] * 50)}
    C.derive(rows, "fp32-pytorch", 200, 0)
    assert rows["small-fast"]["smaller"] == pytest.approx(90 / 14) and rows["small-fast"]["faster"] == pytest.approx(6 / 1.9)
    best, lines = C.goal(rows)
    assert best == "small-fast"
    text = "\n".join(lines)
    assert "`small-slow`" in text and "misses (speed)" in text and "misses (accuracy)" in text


# ---------------------------------------------------------------- params
def params_with(**cls) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in cls.items():
        raw["classifier"][key] = value
    return raw


@pytest.mark.parametrize("change, match", [
    ({"variants": {"x": {"node": "fp32", "runtime": "pytorch", "precision": "int8_static"}}},
     "pytorch builds \\['fp32'\\], not int8_static"),
    ({"variants": {"x": {"node": "nope", "runtime": "pytorch", "precision": "fp32"}}}, "unknown node 'nope'"),
    ({"reference": "missing"}, "reference: 'missing' is not a variant"),
    ({"nodes": {"a": {"method": "distill", "input": "a"}}}, "nodes.a.input: unknown node 'a'"),
])
def test_bad_classifier_params_are_one_line_before_any_work(change, match):
    with pytest.raises(PipelineError, match=match) as err:
        P.validate(params_with(**change))
    assert "\n" not in str(err.value)


def test_the_split_must_be_three_fractions_summing_to_one():
    raw = params_with()
    raw["classifier"]["data"]["split"] = [0.5, 0.5, 0.5]
    with pytest.raises(PipelineError, match="summing to 1"):
        P.validate(raw)


def test_the_encoder_archive_is_checksummed(tmp_path):
    cfg = json.loads(json.dumps(yaml.safe_load((ROOT / "params.yaml").read_text())["classifier"]["encoder"]))
    cfg["sha256"] = "0" * 64
    try:
        encoder.archive_path(cfg)
    except PipelineError:
        pytest.skip("the encoder package is not installed")
    with pytest.raises(PipelineError, match="checksum mismatch"):
        encoder.extract(cfg, tmp_path / "enc")
    assert not (tmp_path / "enc").exists()


def test_the_params_check_reads_a_local_labelled_file_before_any_stage(tmp_path):
    from stages.entry.check_params import preflight

    bad = tmp_path / "mine.jsonl"
    bad.write_text('{"text": "fine", "label": "a"}\n{"text": "no label"}\n')
    raw = params_with()
    raw["classifier"]["data"].update(source="local", local_path=str(bad))
    with pytest.raises(PipelineError, match=":2: expected"):
        preflight(P.validate(raw))
    raw["classifier"]["data"]["local_path"] = str(tmp_path / "absent.jsonl")
    with pytest.raises(PipelineError, match="classifier.data.local_path: .*absent.jsonl not found"):
        preflight(P.validate(raw))
