"""The Markdown report (every variant and metric, caveats, references) and the LM reporting
(stages/reporting/lm.py): paired deltas against each model's reference, Pareto flags, verdicts."""
from __future__ import annotations

from pathlib import Path

import pytest

from stages.core.errors import PipelineError
from stages.entry.aggregate import lm_section
from stages.reporting import lm, lm_figures, lm_gate, lm_render, report
from stages.reporting.metric_files import load_detector
from stages.reporting.specs import DETECTOR_METRICS, Metric
from stages.reporting.summary import machine_lines
from stages.reporting.tables import cell, fmt_value, label, overlaps
from stages.tasks.intervals import bootstrap
from tests.metric_fixtures import HOST, LM_VARIANTS, MACHINE as RECORD, PARAMS, REF_HITS, variant_record, write_metrics

MACHINE = machine_lines(RECORD)
FIGS = [("smollm2-135m: accuracy vs decode speed", "png/lm_smollm2-135m_decode_tokens_per_s.png"),
        ("Detector speed", "png/detector_speed.png")]
BOOT = PARAMS["bootstrap"]
FRACTION = PARAMS["verdict"]["pass_fraction"]
HUB = {"smollm2-135m": {"architecture": "LlamaForCausalLM",
                        "weights": {"source": "hub", "id": "HuggingFaceTB/SmolLM2-135M", "revision": "main"}}}


def used(coco="offline", lambada="offline", models=None) -> dict:
    """The params as aggregate.used_params hands them to the report."""
    return {"coco.source": coco, "lambada.source": lambada, "models": models or PARAMS["models"],
            **{k: PARAMS[k] for k in ("detector", "bench_det", "eval_lm", "bench_lm", "bootstrap", "verdict")}}


def rows(tmp_path: Path, ground_truth: bool):
    root = write_metrics(tmp_path / "metrics", ground_truth=ground_truth)
    lms = lm.load(root, BOOT["samples"], BOOT["seed"])
    lm_gate.apply(lms, FRACTION)
    return load_detector(root, ["float32", "float16", "int8"])[0], lms


@pytest.fixture
def lm_rows(tmp_path) -> dict[str, dict]:
    return rows(tmp_path, ground_truth=False)[1]


@pytest.fixture
def offline_report(tmp_path) -> str:
    det, lms = rows(tmp_path, ground_truth=False)
    return report.render(det, lm_section(lms, PARAMS["models"], tmp_path / "metrics", FRACTION), used(), MACHINE, FIGS)


def table_rows(text: str, first_cell: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]


def test_every_variant_and_metric_is_in_the_report(offline_report, lm_rows):
    for variant in ("float32", "float16", "int8"):
        assert f"| `{variant}` |" in offline_report
    for m in DETECTOR_METRICS:
        assert f" {label(m, 5)} |" in offline_report, m.key
    # a detector variant is in its four tables: accuracy, speed/size, energy, settings
    assert len(table_rows(offline_report, "`int8`")) == 4
    gate = offline_report.split("## Which language-model variant can ship")[1].split("\n## ")[0]
    assert "| weights | pytorch |" in gate and "**reference**" in gate
    first = [line for line in offline_report.splitlines() if line.startswith("## ")][0]
    assert first == "## Which language-model variant can ship"   # the pass/fail matrix heads the report
    lm_part = offline_report.split("## Language models")[1].split("\n## ")[0]
    per_model = dict(part.split("\n", 1) for part in lm_part.split("### ")[1:])
    assert per_model.pop("What ran, per model").count("| runtime `") == 4   # the coverage grid
    assert sorted(per_model) == ["gemma3-270m", "smollm2-135m"]   # one table per model
    for model, text in per_model.items():   # every variant once, in its own model's table only
        assert text.splitlines()[1].startswith("Base: ")
        shown = [line.split(" | ")[0][2:] for line in text.splitlines()[5:] if line.startswith("| ")]
        assert text.splitlines()[3].startswith("| variant | bits |")
        assert sorted(shown) == sorted(r["variant"] for r in lm_rows.values() if r["model"] == model)


def test_values_are_formatted_with_units(offline_report):
    int8 = table_rows(offline_report, "`int8`")
    assert "| 80.3 [78.3, 82.3] |" in int8[0]  # agreement mAP 0.803 in %, with its interval
    assert "| 19.20 |" in int8[1]  # latency ms
    (gptq,) = table_rows(offline_report, "gptq-int4 · pytorch")   # acc %, Δ in points, speed-up
    assert gptq.startswith("| gptq-int4 · pytorch | 4 | 113 | 50.0 [") and " | -10.0 [" in gptq
    assert "| 12.0 | 0.40× |" in gptq and gptq.endswith("| same accuracy, dominated |")


def test_report_says_which_variants_are_within_each_others_interval(offline_report):
    noise = offline_report.split("## Differences within the noise")[1].split("\n## ")[0]
    assert "`float32`–`float16`" in noise    # agreement 1.0 vs 0.981: intervals overlap
    assert "`float32`–`int8`" not in noise   # 1.0 vs 0.803 is resolved


def test_overlap_and_cell_on_hand_made_rows():
    acc = next(m for m in DETECTOR_METRICS if m.key == "agreement_mAP")
    rows_ = {"a": {"agreement_mAP": 0.5, "agreement_mAP_ci95": [0.45, 0.55]},
             "b": {"agreement_mAP": 0.52, "agreement_mAP_ci95": [0.5, 0.6]},
             "c": {"agreement_mAP": 0.1, "agreement_mAP_ci95": [0.05, 0.15]}}
    assert overlaps(rows_, [acc]) == ["agreement mAP vs float32 (%): `a`–`b`"]
    assert cell(acc, rows_["a"]) == "50.0 [45.0, 55.0]"
    assert cell(acc, {"agreement_mAP": 0.5, "agreement_mAP_ci95": None}) == "50.0"


def test_offline_sources_get_one_caveat_each(offline_report):
    caveats = offline_report.split("## Caveats")[1].split("\n## ")[0]
    assert "agreement with float32, not COCO mAP" in caveats
    assert "smollm2-135m's base is not the original checkpoint" in caveats
    assert "(SmolLM2-135M-Instruct.Q4_1.gguf)" in caveats and "gemma3-270m's base" in caveats
    assert "Not the official LAMBADA" in caveats
    assert "Small COCO sample" in caveats and "20 images" in caveats
    assert "`coco.source`: **offline**" in offline_report
    assert "`models.smollm2-135m`: **package**" in offline_report


def test_official_sources_have_no_caveats(tmp_path):
    det, lms = rows(tmp_path, ground_truth=True)
    for r in det.values():
        r["num_images"] = 5000
    text = report.render(det, lm_section(lms, HUB, tmp_path / "metrics", FRACTION), used("official", "official", HUB), MACHINE, FIGS)
    assert "## Caveats" not in text
    assert "`models.smollm2-135m`: **hub**" in text


def test_small_ground_truth_sample_caveat(tmp_path):
    det, _ = rows(tmp_path, ground_truth=True)
    notes = report.caveats(used("local", "local", HUB), det)
    assert len(notes) == 1 and "50 images" in notes[0]


def test_references_definitions_params_machine_and_figures(offline_report):
    assert "22 COCO mAP" in offline_report and "ssd_mobilenet_v2_coco_2018_03_29" in offline_report
    assert "| *published float, full COCO (TF1 zoo)* | 22.0 |" in offline_report
    assert "lambada_openai" in offline_report and '`" " + last word`' in offline_report
    assert "`topk_acc`" in offline_report and "`topk_word_acc`" in offline_report
    assert "architecture: LlamaForCausalLM" in offline_report
    assert f"limit: {PARAMS['eval_lm']['limit']}" in offline_report
    assert "Test CPU 9000" in offline_report and "torch 2.13.0" in offline_report
    assert "recorded by the benchmark stages" in offline_report
    assert f"![{FIGS[0][0]}]({FIGS[0][1]})" in offline_report


@pytest.mark.parametrize("metric, value, text", [
    (DETECTOR_METRICS[0], None, "n/a"),
    (DETECTOR_METRICS[0], -1.0, "n/a"),  # pycocotools: no object of that size
    (DETECTOR_METRICS[0], 0.2153, "21.5"),
    (Metric("has_ground_truth", "gt", None, fmt=""), False, "no"),
    (Metric("k", "k", None, fmt="d"), 5, "5"),
])
def test_fmt_value(metric, value, text):
    assert fmt_value(metric, value) == text


def test_every_ranked_metric_has_a_direction_and_unique_key(lm_rows):
    keys = [m.key for m in DETECTOR_METRICS]
    assert len(keys) == len(set(keys))
    assert all(m.group in ("accuracy", "cost", "energy") for m in DETECTOR_METRICS)
    assert all(m.higher_is_better is not None for m in DETECTOR_METRICS if m.spread or m.ci)
    for row in lm_render.summary(lm_rows).values():   # every LM number but the counts has a direction
        numbers = {k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert numbers - {"bits", "num_examples", "confident_n"} == set(lm.DIRECTIONS)


def test_energy_section_names_the_method_and_says_what_estimate_means(offline_report):
    notes = offline_report.split("## Energy: how it was obtained")[1].split("\n## ")[0]
    assert "energy method: `estimate`" in notes
    assert "proportional to CPU time" in notes and "no information beyond the speed" in notes
    assert "### Energy and carbon (method: `estimate`" in offline_report
    int8 = table_rows(offline_report, "`int8`")[2]  # detector energy table
    assert int8.startswith("| `int8` | 0.154 (0.138–0.169) | 0.192 (0.173–0.211) |")
    assert "| 3390 |" in int8  # break-even images vs float32
    assert "J/token: energy per decoded token, batch 1 (method: `estimate`; `estimate` is CPU time" \
        in offline_report


def test_mixed_methods_are_called_out(tmp_path):
    det, lms = rows(tmp_path, ground_truth=False)
    det["int8"]["energy_methods"] = ["rapl"]
    text = report.render(det, lm_section(lms, PARAMS["models"], tmp_path / "metrics", FRACTION), used(), MACHINE, FIGS)
    assert "**mixed methods**" in text and "different methods" in text


# ------------------------------------------------------------------ LM rows (stages/reporting/lm.py)
def test_paired_delta_is_the_mean_of_per_example_differences(lm_rows):
    for key, r in lm_rows.items():
        if r["model"] != "smollm2-135m":
            continue
        diff = [int(a) - int(b) for a, b in zip(LM_VARIANTS[key][3], REF_HITS)]
        lo, hi = r["delta_acc_ci95"]
        assert r["delta_acc"] == pytest.approx(sum(diff) / len(diff)) and lo <= r["delta_acc"] <= hi, key
        assert r["delta_acc_ci95"] == bootstrap(diff, BOOT["samples"], BOOT["seed"]), key   # paired
    q8 = lm_rows["smollm2-135m-llamacpp-q8_0"]   # one example lost, one gained: 0, not resolved
    assert q8["delta_acc"] == 0 and q8["delta_acc_ci95"][0] < 0 < q8["delta_acc_ci95"][1]
    # pairing resolves what unpaired intervals cannot: 30% vs 60% with overlapping intervals
    pruned, ref = lm_rows["smollm2-135m-prune+gptq4-pytorch"], lm_rows["smollm2-135m-pytorch"]
    assert pruned["acc_ci95"][1] > ref["acc_ci95"][0] and pruned["delta_acc_ci95"][1] < 0


def test_reference_is_the_base_pytorch_fp32_variant(lm_rows):
    assert {r["reference"] for r in lm_rows.values()} == {"base · pytorch fp32"}
    ref = lm_rows["gemma3-270m-pytorch"]
    assert (ref["delta_acc"], ref["delta_acc_ci95"], ref["speedup"]) == (0, [0.0, 0.0], 1.0)
    assert lm_rows["gemma3-270m-pytorch-bf16"]["speedup"] == 25.0 / 20.0   # bf16 is not the reference
    assert lm_rows["gemma3-270m-ov-int8"]["delta_acc"] == pytest.approx(0.05)   # its own model's hits


def test_a_model_without_a_reference_is_a_one_line_error(tmp_path):
    root = write_metrics(tmp_path / "metrics")
    for part in ("eval", f"bench/{HOST}", "build"):   # gemma keeps its PyTorch bf16 base: not fp32
        (root / "lm" / part / "gemma3-270m-pytorch.json").unlink()
    with pytest.raises(PipelineError, match=r"^gemma3-270m: no base PyTorch fp32 variant") as exc:
        lm.load(root, BOOT["samples"], BOOT["seed"])
    assert "\n" not in str(exc.value)


def test_a_missing_bench_file_is_a_one_line_error(tmp_path):
    root = write_metrics(tmp_path / "metrics")
    (root / "lm" / "bench" / HOST / "smollm2-135m-ort-int4.json").unlink()
    with pytest.raises(PipelineError, match=r"eval/smollm2-135m-ort-int4.json has no bench metrics") as exc:
        lm.load(root, BOOT["samples"], BOOT["seed"])
    assert "\n" not in str(exc.value)


def test_pareto_flags_leave_dominated_variants_off_the_front(lm_rows):
    speed = {k for k, r in lm_rows.items() if r["pareto_decode_tokens_per_s"]}
    size = {k for k, r in lm_rows.items() if r["pareto_size_mb"]}
    # smollm2's PyTorch fp32 is dominated by q8_0 (faster, smaller, as accurate), GPTQ int4 on
    # PyTorch by ORT int4 (faster, smaller, more accurate); gemma's bf16 by OpenVINO int8
    front = {"smollm2-135m-ort-int4", "smollm2-135m-llamacpp-q8_0", "gemma3-270m-ov-int8"}
    assert speed == front and size == front
    fig = lm_figures.tradeoff(lm_rows, "smollm2-135m", "decode_tokens_per_s")
    line = next(t for t in fig.data if t.name == "Pareto front")
    assert list(line.x) == [100.0, 150.0] and "Test CPU 9000" in fig.layout.title.text


@pytest.mark.parametrize("ci, speed, size, text", [
    ([-0.1, 0.05], True, True, "same accuracy, on both fronts"),
    ([0.01, 0.2], True, False, "more accurate, on the speed front"),
    ([-0.3, -0.1], False, True, "less accurate, on the size front"),
    ([-0.3, -0.1], False, False, "less accurate, dominated"),
    ([0.0, 0.15], False, False, "same accuracy, dominated"),   # an interval that touches 0
])
def test_verdict_wording(ci, speed, size, text):
    assert lm.verdict({"delta_acc_ci95": ci, "pareto_decode_tokens_per_s": speed, "pareto_size_mb": size}) == text


@pytest.mark.parametrize("precision, bits", [("fp32", 32), ("f32", 32), ("f16", 16), ("bf16", 16), ("int8", 8),
                                             ("q8_0", 8), ("int4", 4), ("q4_0", 4), ("q4_1", 4), ("q4_k_m", 4)])
def test_a_runtime_precision_gives_its_bits(precision, bits):
    assert lm.weight_bits({"chain": [], "knobs": {"precision": precision}}) == bits


def test_verdicts_and_labels_from_the_records(lm_rows):
    assert lm.verdict(lm_rows["smollm2-135m-prune+gptq4-pytorch"]) == "less accurate, dominated"
    assert lm.verdict(lm_rows["smollm2-135m-llamacpp-q8_0"]) == "same accuracy, on both fronts"
    assert lm_rows["smollm2-135m-prune+gptq4-pytorch"]["variant"] == "prune 50%+gptq-int4 · pytorch"
    assert (lm_rows["smollm2-135m-ort-int4"]["variant"], lm_rows["smollm2-135m-ort-int4"]["bits"]) == \
        ("base · ort_genai int4", 4)
    rec = variant_record("smollm2-135m-prune+gptq4-pytorch")
    rec["chain"][0]["knobs"] = {**rec["chain"][0]["knobs"], "pattern": "2:4"}
    assert lm.label(rec) == "prune 2:4+gptq-int4 · pytorch" and lm.weight_bits(rec) == 4
    # the one-time cost sums every step of the chain and the build
    assert lm_rows["smollm2-135m-prune+gptq4-pytorch"]["compress_energy_j"] == 20.0 + 700.0 + 40.0


def test_only_the_variants_the_params_ask_for_are_shown(tmp_path):
    """A metric file left from other params (the full run's, during a profile) is never a row;
    a variant the params ask for without its file is a one-line error."""
    root = write_metrics(tmp_path / "metrics")
    every = lm.load(root, BOOT["samples"], BOOT["seed"])
    keys = {"smollm2-135m-pytorch", "smollm2-135m-ort-int4"}
    assert set(lm.load(root, BOOT["samples"], BOOT["seed"], keys)) == keys < set(every)
    with pytest.raises(PipelineError, match=r"^no eval metrics for smollm2-135m-x-pytorch/int4 ") as exc:
        lm.load(root, BOOT["samples"], BOOT["seed"], keys | lm.wanted(
            {}, {"models": ["smollm2-135m"], "methods": ["x"], "runtimes": ["pytorch"], "bits": 4}))
    assert "\n" not in str(exc.value)
