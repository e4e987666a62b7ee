"""The quick profile (stages/profiles/quick.yaml): its overrides apply as `dvc exp run -S` applies
them, the result passes the params check, and it covers every task, runtime and method family."""
from pathlib import Path

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.entry import profile
from stages.methods import lm as methods
from stages.reporting import lm as lm_report
from stages.runtimes import lm as runtimes
from stages.schema.variants import split_variant

ROOT = Path(__file__).resolve().parents[1]
# every method family of the default CPU run once: the quick profile runs one method of each
# (GPTQ, RTN and AWQ differ in kind: a Hessian update, rounding, a scale search; AWQ's CPU
# search takes an hour, so the default leaves it to the GPU results set), magnitude pruning only
FAMILY = {"gptq": "gptq", "rtn": "rtn", "awq": "awq", "distill": "distillation",
          "prune": "pruning", "wanda": "pruning", "sparsegpt": "pruning"}


@pytest.fixture(scope="module")
def quick() -> dict:
    return profile.applied(ROOT / "params.yaml", profile.overrides("quick"))


def test_quick_covers_every_runtime_and_method_family(quick):
    scored_on = {v["runtime"] for v in quick["variants"].values()} | set(quick["quant"]["runtimes"])
    assert scored_on == set(runtimes.names())
    used = {c["method"] for c in quick["compress"].values()} | set(quick["quant"]["methods"])
    assert set(FAMILY) == set(methods.names()), "a registered method without a family here"
    default = yaml.safe_load((ROOT / "params.yaml").read_text())   # the families the full CPU run has
    in_default = {c["method"] for c in default["compress"].values()} | set(default["quant"]["methods"])
    assert {FAMILY[m] for m in used} == {FAMILY[m] for m in in_default}
    chains = [c for c in quick["compress"].values() if c["input"] in quick["compress"]]
    assert chains, "no chain of two methods"
    scored = {v["node"] for v in quick["variants"].values()}
    inputs = {c["input"] for c in quick["compress"].values()}
    assert set(quick["compress"]) <= scored | inputs, "a compressed node that nothing uses"
    # the detector: LiteRT float32 (the reference), calibrated int8 on ONNX Runtime and OpenVINO
    assert "float32" in quick["detector"]["precisions"]
    assert {split_variant(r) for r in quick["detector"]["runtimes"]} == {("onnxruntime", "int8"), ("openvino", "int8")}
    # the classifier: every runtime, a compressed node, a reference that is in the slice
    cls = quick["classifier"]
    assert {v["runtime"] for v in cls["variants"].values()} == {"pytorch", "onnxruntime", "openvino"}
    assert cls["reference"] in cls["variants"] and {v["node"] for v in cls["variants"].values()} - {"fp32"}


def test_quick_is_smaller_than_the_default(quick):
    import yaml
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert quick["eval_lm"]["limit"] < default["eval_lm"]["limit"]
    assert len(quick["variants"]) < len(default["variants"])
    # the report shows the profile's variants only, never a leftover file of the full run
    wanted = lm_report.wanted(quick["variants"], quick["quant"])
    assert "smollm2-135m-gptq-ort_genai/int4" in wanted and "gemma3-270m-pytorch" not in wanted


def test_profile_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(PipelineError, match="unknown profile 'quik'; profiles: gpu, quick"):
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


def test_a_profile_applies_again_on_top_of_itself(tmp_path):
    """A second run in the same workspace: its deletions are already done, the rest re-applies."""
    from dvc.utils.hydra import apply_overrides
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    items = profile.effective(params, profile.overrides("quick"))
    apply_overrides(params, items)          # as `dvc exp run -S` leaves the workspace
    again = profile.effective(params, profile.overrides("quick"))
    assert "~models.gemma3-270m" in items and "~models.gemma3-270m" not in again
    assert profile.applied(params, again)["variants"] == profile.applied(ROOT / "params.yaml", items)["variants"]


def test_the_profile_keeps_only_its_own_dags_lock_entries(quick, tmp_path):
    """DVC re-reads and rewrites the whole lock around each stage: the profile drops the entries
    of the default's stages it does not run, and keeps its own untouched."""
    import yaml
    names = profile.dag_stages(quick)
    assert {"check_params", "aggregate", "lm_quant@smollm2-135m-gptq", "cls_report"} <= names
    assert not {n for n in names if "gemma3" in n}   # the profile removes Gemma 3
    lock = tmp_path / "dvc.lock"
    lock.write_text((ROOT / "dvc.lock").read_text())
    before = yaml.safe_load(lock.read_text())["stages"]
    dropped = profile.trim_lock(lock, names)
    after = yaml.safe_load(lock.read_text())["stages"]
    assert set(after) == set(before) & names and dropped == len(before) - len(after) > 0
    assert all(after[n] == before[n] for n in after)
    assert profile.trim_lock(lock, names) == 0   # a second run of the profile: nothing more to drop
