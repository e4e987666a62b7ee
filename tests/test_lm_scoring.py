"""Pure LAMBADA scoring on hand-made inputs (no model)."""
from __future__ import annotations

import math

import pytest
import torch

from stages import lm_scoring as S


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


def test_encode_pair_moves_trailing_space_and_matches_whole_text():
    vocab = {}
    enc = lambda s: [vocab.setdefault(w, len(vocab)) for w in s.replace(" ", " _").split(" ")]  # noqa: E731
    ctx, cont = S.encode_pair(enc, "the cat sat ", "down")
    assert ctx == enc("the cat sat") and ctx + cont == enc("the cat sat down")


def test_build_inputs_drops_last_id_and_left_truncates():
    assert S.build_inputs([1, 2, 3], [4, 5], 10) == ([1, 2, 3, 4], 2)
    assert S.build_inputs([1, 2, 3], [4, 5], 3) == ([2, 3, 4], 2)


def test_length_sorted_batches_cover_every_index_once():
    batches = S.length_sorted_batches([3, 9, 1, 9, 5], 2)
    assert batches == [[1, 3], [4, 0], [2]]


def test_pad_right_keeps_real_tokens_first():
    ids, mask = S.pad_right([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


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


def test_aggregate_perplexity_is_exp_of_mean_negative_loglik():
    scores = [{"loglik": -1.0, "greedy": True, "topk_first": True, "topk_word": True},
              {"loglik": -3.0, "greedy": False, "topk_first": True, "topk_word": False}]
    m = S.aggregate(scores, k=5)
    assert m["acc"] == 0.5 and m["topk_acc"] == 1.0 and m["topk_word_acc"] == 0.5
    assert m["ppl"] == pytest.approx(math.exp(2.0)) and m["num_examples"] == 2 and m["k"] == 5
