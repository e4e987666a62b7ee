"""The quick profile (stages/profiles/quick.yaml): its overrides apply as `dvc exp run -S` applies
them, the result passes the params check, and it covers every task, runtime and method family."""
from pathlib import Path

import pytest

from stages.core.errors import PipelineError
from stages.entry import profile
from stages.methods import lm as methods
from stages.reporting import lm as lm_report
from stages.runtimes import lm as runtimes
from stages.schema.variants import split_variant

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick() -> dict:
    return profile.applied(ROOT / "params.yaml", profile.overrides("quick"))


def test_quick_covers_every_runtime_and_method_family(quick):
    assert {v["runtime"] for v in quick["variants"].values()} == set(runtimes.names())
    used = {c["method"] for c in quick["compress"].values()} | set(quick["quant"]["methods"])
    assert used == set(methods.names())
    chains = [c for c in quick["compress"].values() if c["input"] in quick["compress"]]
    assert chains, "no chain of two methods"
    scored = {v["node"] for v in quick["variants"].values()}
    assert set(quick["compress"]) <= scored, "a compressed node that no variant scores"
    # the detector: LiteRT float32 and a calibrated int8, ONNX Runtime and OpenVINO
    assert {"float32", "int8"} <= set(quick["detector"]["precisions"])
    assert {split_variant(r)[0] for r in quick["detector"]["runtimes"]} == {"onnxruntime", "openvino"}


def test_quick_is_smaller_than_the_default(quick):
    import yaml
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert quick["eval_lm"]["limit"] < default["eval_lm"]["limit"]
    assert len(quick["variants"]) < len(default["variants"])
    # the report shows the profile's variants only, never a leftover file of the full run
    wanted = lm_report.wanted(quick["variants"], quick["quant"])
    assert "smollm2-135m-gptq-pytorch/int4" in wanted and "gemma3-270m-pytorch" not in wanted


def test_profile_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(PipelineError, match="unknown profile 'quik'; profiles: quick"):
        profile.overrides("quik")
    with pytest.raises(PipelineError, match="does not apply"):   # a typo'd key: Hydra refuses
        profile.applied(ROOT / "params.yaml", ["eval_lm.limt=5"])
    with pytest.raises(PipelineError, match="limt"):              # an added unknown key: the schema
        profile.applied(ROOT / "params.yaml", ["+eval_lm.limt=5"])
    with pytest.raises(PipelineError, match="eval_lm.limit"):     # out of range
        profile.applied(ROOT / "params.yaml", ["eval_lm.limit=-1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("overrides: eval_lm.limit=5\n")
    monkeypatch.setattr(profile, "FOLDER", tmp_path)
    with pytest.raises(PipelineError, match="a list of strings"):
        profile.overrides("bad")
