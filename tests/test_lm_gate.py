"""The deployment gate (MLPerf's accuracy rule) and its pass/fail matrix, on made-up rows whose
paired differences are known."""
from __future__ import annotations

from stages.reporting import lm_gate
from stages.tasks.intervals import bootstrap


def row(variant: str, hits: str) -> dict:
    return {"model": "m", "variant": variant, "hits": hits, "acc": hits.count("1") / len(hits),
            "num_examples": len(hits), "reference": "base · pytorch", "decode_tokens_per_s": 10.0,
            "size_mb": 100.0, "energy_j_per_token": 0.5}


def rows_with_deltas(ref_hits: str, others: dict[str, str]) -> dict[str, dict]:
    rows = {"ref": row("base · pytorch", ref_hits)}
    for name, hits in others.items():
        rows[name] = row(name, hits)
    for r in rows.values():
        d = [int(a) - int(b) for a, b in zip(r["hits"], ref_hits)]
        r["delta_acc"], r["delta_acc_ci95"] = sum(d) / len(d), bootstrap(d, 500, 0)
    return rows


REF = "1" * 500 + "0" * 500   # reference accuracy 50.0 %; the gate's line at 0.99 is 49.5 %


def test_identical_predictions_pass_confidently_and_a_clear_loss_fails():
    rows = rows_with_deltas(REF, {"same · ort_genai": REF,
                                  "worse · ort_genai": "1" * 450 + "0" * 550})   # 45.0 %
    lm_gate.apply(rows, 0.99)
    assert rows["ref"]["gate"] == "reference"
    assert rows["same · ort_genai"]["gate"] == "confident pass"
    assert rows["worse · ort_genai"]["gate"] == "fail"
    assert abs(rows["worse · ort_genai"]["line"] - 0.495) < 1e-12


def test_a_pass_on_the_point_estimate_with_a_wide_interval_is_not_confident_and_says_its_n():
    # 49.6 %: above the line, but 40 examples flipped each way and 4 more lost
    flipped = "0" * 44 + "1" * 456 + "1" * 40 + "0" * 460
    rows = rows_with_deltas(REF, {"noisy · llamacpp q4_k_m": flipped})
    lm_gate.apply(rows, 0.99)
    r = rows["noisy · llamacpp q4_k_m"]
    assert r["acc"] >= r["line"] and r["gate"] == "pass"
    assert r["confident_n"] > len(REF)   # more examples than were scored
    lm_gate.apply(rows, 0.90)            # a looser gate: the same interval now clears it
    assert r["gate"] == "confident pass" and r["confident_n"] is None


def test_the_matrix_puts_weights_against_runtimes_and_says_why_a_cell_fails():
    rows = rows_with_deltas(REF, {"base · llamacpp q4_k_m": REF, "gptq-int4 · ort_genai": "1" * 400 + "0" * 600,
                                  "prune · pytorch": REF})
    lm_gate.apply(rows, 0.99)
    text = "\n".join(lm_gate.matrix(rows, "m"))
    head, _, *body = text.splitlines()
    assert head == "| weights | pytorch | llamacpp | ort_genai |"
    cells = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in body}
    assert set(cells) == {"base fp32", "base q4_k_m", "gptq-int4", "prune fp32"}
    assert cells["base fp32"][0].startswith("**reference**")
    assert cells["gptq-int4"][2].startswith("fail (-10.0 pt)")
    assert cells["base q4_k_m"][1].startswith("**confident pass** · 10 tok/s · 100 MB")
    assert cells["prune fp32"][1] == "–"
    assert "1000 examples" in lm_gate.legend(rows, 0.99)[0]
