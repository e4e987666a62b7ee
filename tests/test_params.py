"""The typed params schema: typos, unknown choices and out-of-range values are one-line
errors naming the key (and the closest valid key), before any stage does work."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.entry import check_params
from stages.schema import params as P
from stages.schema.lm_plugins import check_plugins

ROOT = Path(__file__).resolve().parents[1]
GOOD = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(path: str, value, delete: bool = False) -> dict:
    raw = copy.deepcopy(GOOD)
    *parents, leaf = path.split(".")
    node = raw
    for part in parents:
        node = node[part]
    if delete:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


def test_repo_params_are_valid():
    p = P.validate(GOOD)
    assert p.quant.bits == [8, 4] and "float32" in p.detector.precisions
    check_plugins(p)   # every plugin, knob and cell of the committed tables


@pytest.mark.parametrize("path, value, message", [
    ("quant.bit", 4, "unknown key 'quant.bit' (did you mean 'quant.bits'?)"),
    ("eval_lm.topk", 3, "unknown key 'eval_lm.topk' (did you mean 'eval_lm.k'?)"),
    ("coco.source", "nonsense", "coco.source: Input should be"),
    ("quant.bits", [8, 5], "quant.bits: Input should be 2, 3, 4 or 8, got 5"),
    ("quant.bits", [4, 4], "quant.bits lists a value twice"),
    ("quant.models", ["nope"], "quant.models: 'nope' is not in models"),
    ("eval_lm.k", 0, "eval_lm.k: Input should be greater than or equal to 1"),
    ("compress.x", {"model": "smollm2-135m", "input": "y", "method": "prune"}, "neither a model nor a node"),
    ("variants.x", {"node": "nope", "runtime": "pytorch"}, "neither a model nor a compress node"),
    ("models.smollm2-135m.weights.sha256", "abc", "String should match pattern"),
])
def test_bad_params_are_one_line_errors(path, value, message):
    with pytest.raises(PipelineError) as exc:
        P.validate(with_change(path, value))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_missing_key_is_named():
    with pytest.raises(PipelineError, match="missing key 'quant.bits'"):
        P.validate(with_change("quant.bits", None, delete=True))


@pytest.mark.parametrize("path, value, message", [
    ("runtimes.ort_genai.blok_size", 32, "unknown knob 'blok_size' (did you mean 'block_size'?)"),
    ("methods.gptq.damp_percent", 0, "damp_percent"),
    ("methods.awq.dtype", "float32", "dtype"),
    ("methods.gptq.group_size", 0, "group_size: Value error, a group is -1"),
    ("methods.rtn.group_size", -2, "group_size: Value error, a group is -1"),
    ("compress.x", {"model": "smollm2-135m", "input": "smollm2-135m", "method": "awq", "group_size": 0},
     "group_size"),
    ("methods.prune.sparsity", 1.0, "sparsity"),
    ("runtimes.pytorch.backend", {8: "gptq_torch_aten"}, "cannot run 8-bit weights"),
    ("runtimes.pytorch.backend", "gptq_marlin", "runs on ['cuda'], not cpu"),
    ("variants.x", {"node": "gemma3-270m", "runtime": "openvino"}, "does not support Gemma3ForCausalLM"),
    ("variants.x", {"node": "smollm2-135m-prune+rtn4", "runtime": "llamacpp"}, "cannot build a rtn"),
    ("compress.x", {"model": "smollm2-135m", "input": "smollm2-135m-prune+rtn4", "method": "prune"},
     "a quantizer ends a chain"),
    ("quant.methods", ["prune"], "not a quantizer"),
    pytest.param("methods.gptq.device", "cuda", "no CUDA device", marks=pytest.mark.skipif(
        __import__("torch").cuda.is_available(), reason="this machine has CUDA")),
    pytest.param("compress.x", {"model": "smollm2-135m", "input": "smollm2-135m", "method": "distill",
                                "device": "cuda"}, "compress.x.device: cuda", marks=pytest.mark.skipif(
        __import__("torch").cuda.is_available(), reason="this machine has CUDA")),
])
def test_plugin_checks_are_one_line_errors_before_any_stage(path, value, message):
    with pytest.raises(PipelineError) as err:
        check_plugins(P.validate(with_change(path, value)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_scalar_bits_and_precisions_become_lists():
    assert P.validate(with_change("quant.bits", 4)).quant.bits == [4]  # dvc exp run -S quant.bits=4


def test_load_returns_only_declared_keys_and_records_reads(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(GOOD))
    p = P.load(f, ("seed", "quant.bits"))
    assert p.plain() == {"seed": 0, "quant": {"bits": [8, 4]}}
    with pytest.raises(KeyError):
        p["coco"]
    seen: set = set()
    q = P.select(P.validate(GOOD), ("quant",), seen)
    q["quant"]["bits"]
    assert seen == {"quant", "quant.bits"}


def test_invalid_yaml_and_missing_file(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("quant: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        P.read(f)
    with pytest.raises(PipelineError, match="params file not found"):
        P.read(tmp_path / "absent.yaml")


def test_params_rewritten_by_dvc_exp_run_set_param_still_validate(tmp_path):
    """`dvc exp run -S` rewrites params.yaml with ruamel and drops the quotes of "2:4"; read as
    YAML 1.1 that is the integer 124, so the file DVC itself wrote failed check_params; and
    inside a {flow mapping} DVC's own reader refused the file it had just written."""
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml
    f = tmp_path / "params.yaml"
    f.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(f, ["quant.bits=4"])   # what `dvc exp run -S quant.bits=4` does to the file
    assert '"2:4"' not in f.read_text() and "2:4" in f.read_text()
    assert load_yaml(f)["compress"]["smollm2-135m-wanda24"]["pattern"] == "2:4"   # DVC reads it back
    params = P.validate(P.read(f), f)
    assert params.compress["smollm2-135m-prune24"].__pydantic_extra__["pattern"] == "2:4"
    assert params.quant.bits == [4]


def test_check_params_stage_checks_local_paths_and_writes_a_constant_marker(tmp_path):
    f, out = tmp_path / "params.yaml", tmp_path / "params.ok"
    f.write_text(yaml.safe_dump(with_change("lambada.source", "local")))
    raw = yaml.safe_load(f.read_text())
    raw["lambada"]["local_path"] = str(tmp_path / "absent.jsonl")
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(PipelineError, match="lambada.local_path: .*absent.jsonl not found"):
        check_params.main(["--params", str(f), "--out", str(out)])
    assert not out.exists()
    for seed in (0, 7):  # any valid params give the same bytes: nothing downstream reruns
        f.write_text(yaml.safe_dump(with_change("seed", seed)))
        check_params.main(["--params", str(f), "--out", str(out)])
        assert out.read_text() == check_params.MARKER


def test_cli_error_is_one_line_with_exit_code_2(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(with_change("quant.bit", 4)))
    proc = subprocess.run([sys.executable, "-m", "stages.entry.check_params", "--params", str(f),
                           "--out", str(tmp_path / "ok")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {f}: unknown key 'quant.bit' (did you mean 'quant.bits'?)"]


def test_plain_keeps_a_per_width_maps_int_keys(tmp_path):
    f = tmp_path / "params.yaml"   # a spawned child gets .plain(): {4: kernel} must keep int keys
    f.write_text(yaml.safe_dump(GOOD))
    rt = P.load(f, ("runtimes.pytorch",))["runtimes"]["pytorch"].plain()
    assert rt["backend"] == {8: "gptq_torch", 4: "gptq_torch_aten", 2: "gptq_torch"}


def test_the_ready_made_model_entries_in_the_docs_validate():
    """docs/extending.md's entries for the seeds' other LMs pass the params check as pasted."""
    doc = (ROOT / "docs" / "extending.md").read_text()
    block = doc.split("<!-- ready-models:start -->")[1].split("<!-- ready-models:end -->")[0]
    entries = yaml.safe_load("models:\n" + block.split("```yaml\n")[1].split("```")[0])["models"]
    assert set(entries) == {"opt-350m", "tinyllama-1-1b", "llama-3-2-3b"}
    raw = copy.deepcopy(GOOD)
    raw["models"].update(entries)
    check_plugins(P.validate(raw))
