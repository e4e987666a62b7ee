"""The Markdown report: every variant and metric, the caveats the sources call for, references."""
from __future__ import annotations

from pathlib import Path

import pytest

from stages.reporting import report
from stages.reporting.metric_files import load_detector, load_llm
from stages.reporting.specs import DETECTOR_METRICS, LLM_METRICS, Metric
from stages.reporting.summary import machine_lines
from stages.reporting.tables import cell, fmt_value, label, overlaps
from tests.metric_fixtures import MACHINE as RECORD, PARAMS, write_metrics

MACHINE = machine_lines(RECORD)
FIGS = [("LM size", "png/llm_size.png"), ("Detector speed", "png/detector_speed.png")]


def used(**sources) -> dict:
    params = {"coco.source": "offline", "lambada.source": "offline", "llm.source": "package",
              "llm.hub_id": PARAMS["llm"]["hub_id"], "detector": dict(PARAMS["detector"]),
              "quant": PARAMS["quant"], "bench_det": PARAMS["bench_det"],
              "eval_lm": PARAMS["eval_lm"], "bench_lm": PARAMS["bench_lm"]}
    params.update({k.replace("_", "."): v for k, v in sources.items() if k != "detector_source"})
    if "detector_source" in sources:
        params["detector"]["source"] = sources["detector_source"]
    return params


def rows(tmp_path: Path, ground_truth: bool):
    root = write_metrics(tmp_path / "metrics", ground_truth=ground_truth)
    return (load_detector(root, ["float32", "float16", "int8"])[0],
            load_llm(root, ["base", "int8", "int4", "int2"])[0])


@pytest.fixture
def offline_report(tmp_path) -> str:
    det, llm = rows(tmp_path, ground_truth=False)
    return report.render(det, llm, used(), MACHINE, FIGS)


def table_rows(text: str, first_cell: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]


def test_every_variant_and_metric_is_in_the_report(offline_report):
    for variant in ("float32", "float16", "int8", "base", "int4", "int2"):
        assert f"| `{variant}` |" in offline_report
    for m in DETECTOR_METRICS + LLM_METRICS:
        assert f" {label(m, 5)} |" in offline_report, m.key
    # each variant appears in the four tables of its family: accuracy, speed/size, energy,
    # settings (GPTQ widths also in the kernel sweep's table)
    assert len(table_rows(offline_report, "`int8`")) == 9
    assert len(table_rows(offline_report, "`int2`")) == 5


def test_kernel_sweep_table_lists_only_kernels_that_ran(offline_report):
    sweep = offline_report.split("### GPTQ kernels")[1].split("\n## ")[0]
    assert "| `int4` | `gptq_torch` |" in sweep and "| 1.00 |" in sweep
    assert "gptq_torch_aten" not in sweep   # recorded as unsupported in the fixture


def test_values_are_formatted_with_units(offline_report):
    int8 = table_rows(offline_report, "`int8`")
    assert "| 80.3 [78.3, 82.3] |" in int8[0]  # agreement mAP 0.803 in %, with its interval
    assert "| 19.20 |" in int8[1]  # latency ms
    lm_int4 = table_rows(offline_report, "`int4`")
    assert lm_int4[0].startswith("| `int4` | 32.2 [30.2, 34.2] |")  # LAMBADA acc in %


def test_report_says_which_variants_are_within_each_others_interval(offline_report):
    noise = offline_report.split("## Differences within the noise")[1].split("\n## ")[0]
    assert "`base`–`int8`" in noise      # acc 0.352 vs 0.350, intervals +-0.02 overlap
    assert "`base`–`int2`" not in noise  # 0.352 vs 0.014 is resolved


def test_overlap_and_cell_on_hand_made_rows():
    acc = LLM_METRICS[0]
    rows = {"a": {"acc": 0.5, "acc_ci95": [0.45, 0.55]}, "b": {"acc": 0.52, "acc_ci95": [0.5, 0.6]},
            "c": {"acc": 0.1, "acc_ci95": [0.05, 0.15]}}
    assert overlaps(rows, [acc]) == ["LAMBADA acc (%): `a`–`b`"]
    assert cell(acc, rows["a"]) == "50.0 [45.0, 55.0]"
    assert cell(acc, {"acc": 0.5, "acc_ci95": None}) == "50.0"


def test_offline_sources_get_one_caveat_each(offline_report):
    caveats = offline_report.split("## Caveats")[1].split("\n## ")[0]
    assert "agreement with float32, not COCO mAP" in caveats
    assert "dequantized from a 4-bit GGUF (Q4_1)" in caveats
    assert "Not the official LAMBADA" in caveats
    assert "Small COCO sample" in caveats and "20 images" in caveats
    assert "`coco.source`: **offline**" in offline_report


def test_official_sources_have_no_caveats(tmp_path):
    det, llm = rows(tmp_path, ground_truth=True)
    for r in det.values():
        r["num_images"] = 5000
    text = report.render(det, llm, used(coco_source="official", lambada_source="official",
                                        llm_source="hub"), MACHINE, FIGS)
    assert "## Caveats" not in text
    assert "`llm.source`: **hub**" in text


def test_small_ground_truth_sample_caveat(tmp_path):
    det, llm = rows(tmp_path, ground_truth=True)
    notes = report.caveats(used(coco_source="local", llm_source="hub", lambada_source="local"),
                           det)
    assert len(notes) == 1 and "50 images" in notes[0]


def test_references_definitions_params_machine_and_figures(offline_report):
    assert "22 COCO mAP" in offline_report and "ssd_mobilenet_v2_coco_2018_03_29" in offline_report
    assert "| *published float, full COCO (TF1 zoo)* | 22.0 |" in offline_report
    assert "lambada_openai" in offline_report and '`" " + last word`' in offline_report
    assert "`topk_acc`" in offline_report and "`topk_word_acc`" in offline_report
    assert "group_size: 64" in offline_report and "llm.source: package" in offline_report
    assert "Test CPU 9000" in offline_report and "torch 2.13.0" in offline_report
    assert "recorded by the benchmark stages" in offline_report
    assert "![LM size](png/llm_size.png)" in offline_report


@pytest.mark.parametrize("metric, value, text", [
    (DETECTOR_METRICS[0], None, "n/a"),
    (DETECTOR_METRICS[0], -1.0, "n/a"),  # pycocotools: no object of that size
    (DETECTOR_METRICS[0], 0.2153, "21.5"),
    (Metric("has_ground_truth", "gt", None, fmt=""), False, "no"),
    (Metric("k", "k", None, fmt="d"), 5, "5"),
])
def test_fmt_value(metric, value, text):
    assert fmt_value(metric, value) == text


def test_every_ranked_metric_has_a_direction_and_unique_key():
    for metrics in (DETECTOR_METRICS, LLM_METRICS):
        keys = [m.key for m in metrics]
        assert len(keys) == len(set(keys))
        assert all(m.group in ("accuracy", "cost", "energy") for m in metrics)
        assert all(m.higher_is_better is not None for m in metrics if m.spread)
        assert all(m.higher_is_better is not None for m in metrics if m.ci)


def test_energy_section_names_the_method_and_says_what_estimate_means(offline_report):
    notes = offline_report.split("## Energy: how it was obtained")[1].split("\n## ")[0]
    assert "energy method: `estimate`" in notes
    assert "proportional to CPU time" in notes and "no information beyond the speed" in notes
    assert "### Energy and carbon (method: `estimate`" in offline_report
    int8 = table_rows(offline_report, "`int8`")[2]  # detector energy table
    assert int8.startswith("| `int8` | 0.154 (0.138–0.169) | 0.192 (0.173–0.211) |")
    assert "| 3390 |" in int8  # break-even images vs float32


def test_mixed_methods_are_called_out(tmp_path):
    det, llm = rows(tmp_path, ground_truth=False)
    det["int8"]["energy_methods"] = ["rapl"]
    text = report.render(det, llm, used(), MACHINE, FIGS)
    assert "**mixed methods**" in text and "different methods" in text


def test_the_pruning_note_states_the_dense_models_measured_spread():
    from stages.reporting import methods
    row = lambda tok_s, size=541.6, bits=32: {"bits": bits, "size_mb": size, "decode_tokens_per_s": tok_s}
    llm = {"base": row(13.5), "prune": row(10.9), "prune24": row(12.4), "int4": row(16.6, 174.8, 4),
           "distill": row(18.8, 329.2)}
    text = methods.note(llm)
    assert "The 3 float32 models of the base's size (`base`, `prune`, `prune24`) decode at 10.9–13.5 tok/s" in text
    assert "`int4`" not in text and "`distill`" not in text   # other sizes are other workloads
    assert "decode at" not in methods.note({"base": row(13.5), "int4": row(16.6, 174.8, 4)})
