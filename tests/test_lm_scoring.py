"""Pure LAMBADA scoring (stages/tasks/lambada.py), its intervals (stages/tasks/intervals.py)
and the benchmark timers (stages/meters/timing.py), on hand-made inputs: no model."""
from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

from stages.meters import timing
from stages.tasks import intervals as I, lambada as S


# ---------------------------------------------------------------- text -> token ids
def test_target_is_the_last_word_not_the_last_character():
    text = "I look at him. I don't care about signs"
    context, target = S.split_example(text)
    assert (context, target) == ("I look at him. I don't care about", " signs")
    # regression: the original project scored text[:-1] / text[-1] (the character "s")
    assert target != " " + text[-1] and len(target.strip()) > 1
    assert context + target == text


def test_split_rejects_single_word():
    with pytest.raises(ValueError):
        S.split_example("lonely")


def _word_encoder():
    """A toy tokenizer: one id per space-separated piece, a leading space is its own id."""
    vocab: dict[str, int] = {}
    return lambda s: [vocab.setdefault(w, len(vocab)) for w in s.replace(" ", " _").split(" ")]


def test_encode_pair_moves_trailing_space_and_matches_whole_text():
    enc = _word_encoder()
    ctx, cont = S.encode_pair(enc, "the cat sat ", "down")
    assert ctx == enc("the cat sat") and ctx + cont == enc("the cat sat down")


class ToyTokenizer:
    """Callable like a HF tokenizer; prepends a BOS id when special tokens are requested."""
    BOS = 999

    def __init__(self):
        self.enc, self.calls = _word_encoder(), []

    def __call__(self, text, add_special_tokens=True):
        self.calls.append(add_special_tokens)
        return {"input_ids": ([self.BOS] if add_special_tokens else []) + self.enc(text)}


def test_encode_examples_is_the_harness_request():
    tok = ToyTokenizer()
    text = "a b c d e f target"
    [(inp, n, cont)] = S.encode_examples(tok, [text], max_length=100)
    whole = tok.enc(text)
    assert cont == whole[len(tok.enc("a b c d e f")):] == [tok.enc(" target")[-1]] and n == 1
    assert inp == whole[:-1]                    # the model never sees the last target id
    assert tok.BOS not in inp and not any(tok.calls)  # harness default: no special tokens
    [(short, n2, cont2)] = S.encode_examples(tok, [text], max_length=4)
    assert short == whole[-5:-1] and (n2, cont2) == (n, cont)  # left-truncated, target kept


def test_build_inputs_drops_last_id_and_left_truncates():
    assert S.build_inputs([1, 2, 3], [4, 5], 10) == ([1, 2, 3, 4], 2)
    assert S.build_inputs([1, 2, 3], [4, 5], 3) == ([2, 3, 4], 2)
    with pytest.raises(ValueError):
        S.build_inputs([], [4], 10)


def test_length_sorted_batches_cover_every_index_once():
    batches = S.length_sorted_batches([3, 9, 1, 9, 5], 2)
    assert batches == [[1, 3], [4, 0], [2]]


def test_pad_right_keeps_real_tokens_first():
    ids, mask = S.pad_right([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


# ---------------------------------------------------------------- scores from logits
def _rows(*peaks):
    """Logits over a 6-id vocabulary: each row's dict sets id -> logit (others 0)."""
    out = torch.zeros(len(peaks), 6)
    for r, peak in enumerate(peaks):
        for i, v in peak.items():
            out[r, i] = v
    return out


def test_score_on_hand_made_logits():
    rows = _rows({2: 5.0}, {3: 5.0})                        # argmax 2 then 3
    s = S.score_continuation(rows, [2, 3], k=1)
    assert s["greedy"] and s["topk_first"] and s["topk_word"]
    expected = 2 * (5.0 - math.log(math.exp(5.0) + 5))
    assert s["loglik"] == pytest.approx(expected, rel=1e-6)

    rows = _rows({2: 5.0, 4: 4.0}, {1: 9.0, 3: 1.0, 0: 2.0})  # 2nd target ranks 3rd
    s = S.score_continuation(rows, [2, 3], k=2)
    assert not s["greedy"] and s["topk_first"] and not s["topk_word"]
    assert S.score_continuation(rows, [2, 3], k=3)["topk_word"]
    s = S.score_continuation(rows, [4, 1], k=1)
    assert not s["greedy"] and not s["topk_first"] and s["topk_word"] is False


def test_rank_ties_favour_the_target():
    rows = _rows({1: 3.0, 2: 3.0})      # ids 1 and 2 tie for the top
    assert S.score_continuation(rows, [2], k=1)["topk_first"]  # no id is strictly higher
    assert not S.score_continuation(rows, [0], k=2)["topk_first"]


def test_aggregate_perplexity_is_exp_of_mean_negative_loglik():
    scores = [{"loglik": -1.0, "greedy": True, "topk_first": True, "topk_word": True},
              {"loglik": -3.0, "greedy": False, "topk_first": True, "topk_word": False}]
    m = S.aggregate(scores, k=5)
    assert m["acc"] == 0.5 and m["topk_acc"] == 1.0 and m["topk_word_acc"] == 0.5
    assert m["ppl"] == pytest.approx(math.exp(2.0)) and m["num_examples"] == 2 and m["k"] == 5
    with pytest.raises(ValueError):
        S.aggregate([], k=5)


# ---------------------------------------------------------------- intervals
def _coin(n: int, p: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_bootstrap_interval_contains_the_mean_and_has_the_normal_width():
    x = _coin(400, 0.3)
    lo, hi = I.bootstrap(x, 2000, seed=0)
    assert lo < x.mean() < hi
    normal = 2 * 1.96 * math.sqrt(x.mean() * (1 - x.mean()) / len(x))
    assert hi - lo == pytest.approx(normal, rel=0.15)   # resampling with replacement, not without
    assert I.bootstrap(x, 2000, seed=0) == [lo, hi]     # seeded
    assert I.bootstrap(x, 2000, seed=1) != [lo, hi]


def test_bootstrap_of_constant_scores_is_a_point():
    assert I.bootstrap([1.0] * 50, 200, seed=0) == [1.0, 1.0]
    assert I.bootstrap([0.0] * 50, 200, seed=0) == [0.0, 0.0]


def test_bootstrap_narrows_with_four_times_the_examples():
    small, large = _coin(250, 0.4, seed=1), _coin(1000, 0.4, seed=2)
    w_small = np.diff(I.bootstrap(small, 2000, seed=0))[0]
    w_large = np.diff(I.bootstrap(large, 2000, seed=0))[0]
    assert 0.4 < w_large / w_small < 0.6                # ~ 1/sqrt(4)


def test_acc_stderr_is_the_harness_formula():
    x = _coin(137, 0.35, seed=3)
    p, n = x.mean(), len(x)
    assert I.stderr(x) == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)), rel=1e-12)
    assert I.stderr([1.0]) == 0.0


def test_lambada_intervals_contain_their_metrics():
    rng = np.random.default_rng(4)
    scores = [{"greedy": bool(g), "topk_first": bool(g or t), "topk_word": bool(g or t),
               "loglik": float(-rng.exponential(3.0))}
              for g, t in zip(_coin(300, 0.3, seed=5), _coin(300, 0.4, seed=6))]
    m, ci = S.aggregate(scores, 5), I.lambada_intervals(scores, 1000, seed=0)
    for key in ("acc", "topk_acc", "topk_word_acc", "ppl"):
        lo, hi = ci[f"{key}_ci95"]
        assert lo < m[key] < hi, key
    p = m["acc"]
    assert ci["acc_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / (len(scores) - 1)))
    # perplexity is exp(-mean loglik): its interval is the loglik interval mapped and flipped
    lo, hi = I.bootstrap([s["loglik"] for s in scores], 1000, seed=0)
    assert ci["ppl_ci95"] == pytest.approx([math.exp(-hi), math.exp(-lo)])


# ---------------------------------------------------------------- timers
class FakeClock:
    """perf_counter() that advances only when fake work runs."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_median_time_waits_for_queued_device_work(monkeypatch):
    """On CUDA, kernels run asynchronously: the clock must be read only after sync()."""
    clock, events = FakeClock(), []
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    durations = iter([100.0, 3.0, 1.0, 2.0])   # the warm-up is slow (compilation, caches)

    def run():
        events.append("run")
        clock.now += next(durations)

    median = timing.median_time(run, 3, lambda: events.append("sync"))
    assert median == 2.0                                    # median of the timed runs only
    assert events == ["run"] + ["sync", "run", "sync"] * 3   # warm-up untimed; each run fenced


def test_repeat_ms_discards_warmup(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    durations = iter([9.0, 9.0, 0.001, 0.002, 0.003])

    def run():
        clock.now += next(durations)

    assert timing.repeat_ms(run, warmup=2, runs=3) == pytest.approx([1.0, 2.0, 3.0])


# ---------------------------------------------------------------- fidelity to the reference
def test_kl_and_agreement_on_hand_made_rows():
    import numpy as np

    from stages.tasks import fidelity as F

    p, q = np.array([0.5, 0.25, 0.25]), np.array([0.25, 0.5, 0.25])
    ref = np.log(p)[None, :]
    kl, agree = F.compare(ref, np.log(q)[None, :] + 3.0)   # logits: any shift is the same distribution
    assert kl == pytest.approx(0.5 * np.log(2) + 0.25 * np.log(0.5))   # sum p log(p/q) = 0.25 ln 2
    assert not agree                                                   # argmax 0 vs 1
    kl, agree = F.compare(np.log(np.array([[0.7, 0.2, 0.1], p])), np.log(np.array([[0.6, 0.3, 0.1], p])))
    assert agree and kl == pytest.approx((0.7 * np.log(0.7 / 0.6) + 0.2 * np.log(0.2 / 0.3)) / 2)
    assert F.compare(ref, np.log(p)[None, :])[0] == pytest.approx(0.0, abs=1e-12)


def test_reference_file_round_trip_and_its_one_line_errors(tmp_path):
    import numpy as np

    from stages.core.errors import PipelineError
    from stages.tasks import fidelity as F

    rows = [F.log_softmax(np.array([[1.0, 2.0, 3.0]])), F.log_softmax(np.array([[0.0, 0.0, 1.0], [2.0, 1.0, 0.0]]))]
    F.save(tmp_path / "m.npz", rows, [F.ids_digest([1, 2]), F.ids_digest([3, 4, 5])])
    ref = F.Reference(tmp_path / "m.npz")
    assert len(ref) == 2 and np.allclose(ref.rows(1, [3, 4, 5]), rows[1])
    with pytest.raises(PipelineError, match="not tokenized as in"):
        ref.rows(0, [1, 3])                     # another input than the reference scored
    with pytest.raises(PipelineError, match="holds 2 examples"):
        ref.rows(2, [1])
    with pytest.raises(PipelineError, match="no reference file"):
        F.Reference(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes((tmp_path / "m.npz").read_bytes()[:100])
    with pytest.raises(PipelineError, match="truncated or corrupt"):
        F.Reference(tmp_path / "bad.npz")
    with pytest.raises(PipelineError, match="differ"):
        F.compare(rows[0], np.zeros((1, 4)))    # another vocabulary
