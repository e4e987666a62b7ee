"""The deployment gate (MLPerf's accuracy rule) and its pass/fail matrix, on made-up rows whose
paired differences are known."""
from __future__ import annotations

from stages.reporting import lm, lm_gate
from stages.tasks.intervals import bootstrap


def rec(runtime: str, *chain: tuple[str, dict], **knobs) -> dict:
    """A variant record as the LM stages write it (model m)."""
    return {"model": "m", "chain": [{"method": m, "knobs": k} for m, k in chain], "runtime": runtime,
            "knobs": knobs}


def row(record: dict, hits: str) -> dict:
    """A report row of that record, its identity derived as reporting.lm.load derives it."""
    return {"model": "m", "variant": lm.label(record), "weights": lm.weights(record), "runtime": record["runtime"],
            "hits": hits, "acc": hits.count("1") / len(hits), "num_examples": len(hits),
            "reference": "base · pytorch", "decode_tokens_per_s": 10.0, "size_mb": 100.0, "energy_j_per_token": 0.5,
            "agreement": 0.9}


def rows_with_deltas(ref_hits: str, others: dict[str, tuple[dict, str]]) -> dict[str, dict]:
    rows = {"ref": row(rec("pytorch"), ref_hits)}
    for name, (record, hits) in others.items():
        rows[name] = row(record, hits)
    for r in rows.values():
        d = lm.differences(r, rows["ref"])
        r["delta_acc"], r["delta_acc_ci95"] = sum(d) / len(d), bootstrap(d, 500, 0)
    return rows


REF = "1" * 500 + "0" * 500   # reference accuracy 50.0 %; the gate's line at 0.99 is 49.5 %


def test_identical_predictions_pass_confidently_and_a_clear_loss_fails():
    rows = rows_with_deltas(REF, {"same": (rec("ort_genai", precision="fp32"), REF),
                                  "worse": (rec("ort_genai", precision="int4"), "1" * 450 + "0" * 550)})   # 45.0 %
    lm_gate.apply(rows, 0.99)
    assert rows["ref"]["gate"] == "reference"
    assert rows["same"]["gate"] == "confident pass"
    assert rows["worse"]["gate"] == "fail"
    assert abs(rows["worse"]["line"] - 0.495) < 1e-12


def test_a_pass_on_the_point_estimate_with_a_wide_interval_is_not_confident_and_says_its_n():
    # 49.6 %: above the line, but 40 examples flipped each way and 4 more lost
    flipped = "0" * 44 + "1" * 456 + "1" * 40 + "0" * 460
    rows = rows_with_deltas(REF, {"noisy": (rec("llamacpp", precision="q4_k_m"), flipped)})
    lm_gate.apply(rows, 0.99)
    r = rows["noisy"]
    assert r["acc"] >= r["line"] and r["gate"] == "pass"
    assert r["confident_n"] > len(REF)   # more examples than were scored
    lm_gate.apply(rows, 0.90)            # a looser gate: the same interval now clears it
    assert r["gate"] == "confident pass" and r["confident_n"] is None


def test_the_matrix_puts_weights_against_runtimes_and_says_why_a_cell_fails():
    rows = rows_with_deltas(REF, {"q4": (rec("llamacpp", precision="q4_k_m"), REF),
                                  "gptq": (rec("ort_genai", ("gptq", {"bits": 4})), "1" * 400 + "0" * 600),
                                  "prune": (rec("pytorch", ("prune", {"sparsity": 0.5})), REF)})
    lm_gate.apply(rows, 0.99)
    text = "\n".join(lm_gate.matrix(rows, "m"))
    head, _, *body = text.splitlines()
    assert head == "| weights | pytorch | llamacpp | ort_genai |"
    cells = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in body}
    assert set(cells) == {"base fp32", "base q4_k_m", "gptq-int4", "prune 50% fp32"}
    assert cells["base fp32"][0].startswith("**reference**")
    assert cells["gptq-int4"][2].startswith("fail (-10.0 pt, 90% agree)")
    assert cells["base q4_k_m"][1].startswith("**confident pass** · 90% agree · 10 tok/s · 100 MB")
    assert cells["prune 50% fp32"][1] == "–"
    assert "1000 examples" in lm_gate.legend(rows, 0.99)[0]
