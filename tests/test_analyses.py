"""The analysis entry points that are not stages (stages/entry/harness_speed.py,
det_int8_profile.py): their pure parts, without lm-eval or a model."""
from __future__ import annotations

import json

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.entry import det_int8_profile as D, harness_speed as H


def test_the_harness_task_is_lambada_openai_read_from_a_local_file(tmp_path):
    task = yaml.safe_load(H.TASK.format(path=tmp_path / "lambada_test.jsonl"))
    assert task["dataset_path"] == "json" and task["dataset_kwargs"]["data_files"]["test"].endswith("lambada_test.jsonl")
    # lm-eval 0.4.13's lambada_openai.yaml, verbatim: context = all words but the last, target = " " + last
    assert task["doc_to_text"] == "{{text.split(' ')[:-1]|join(' ')}}"
    assert task["doc_to_target"] == "{{' '+text.split(' ')[-1]}}"
    assert task["output_type"] == "loglikelihood" and task["test_split"] == "test"
    assert [m["metric"] for m in task["metric_list"]] == ["perplexity", "acc"]


def test_the_harness_accuracy_is_read_from_its_latest_results_file(tmp_path):
    with pytest.raises(PipelineError, match="no harness results"):
        H.harness_acc(tmp_path)
    run = tmp_path / "model" / "results_2026-12-07T07-33-36.json"
    run.parent.mkdir()
    run.write_text(json.dumps({"results": {"lambada_openai_local": {"acc,none": 0.297, "perplexity,none": 20.1}}}))
    assert H.harness_acc(tmp_path) == 0.297


def test_a_profile_is_summed_per_invoke_by_op_type_kind_and_backend():
    rows = [("QLinearConv", "QLinearConv", "cpu", 3.0), ("QLinearConv", "QLinearConv depthwise", "cpu", 1.0),
            ("Conv", "Conv", "cpu", 2.0)] * 2      # two profiled invokes
    out = D.summarize([5.0, 7.0, 6.0], rows, runs=2)
    assert out["median_ms"] == 6.0 and out["profiled_ms"] == 6.0
    assert out["by_op_type"][0] == {"name": "QLinearConv", "ms": 4.0, "share": pytest.approx(4 / 6, abs=1e-4), "nodes": 2}
    assert [k["name"] for k in out["by_kind"]] == ["QLinearConv", "Conv", "QLinearConv depthwise"]
    assert out["by_backend"] == [{"name": "cpu", "ms": 6.0, "share": 1.0, "nodes": 3}]
