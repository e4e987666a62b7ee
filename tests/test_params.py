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
    assert p.quant.bits == [8, 4, 2] and "float32" in p.detector.precisions


@pytest.mark.parametrize("path, value, message", [
    ("quant.bit", 4, "unknown key 'quant.bit' (did you mean 'quant.bits'?)"),
    ("eval_lm.topk", 3, "unknown key 'eval_lm.topk' (did you mean 'eval_lm.k'?)"),
    ("detectr", {}, "unknown key 'detectr' (did you mean 'detector'?)"),
    ("coco.source", "nonsense", "coco.source: Input should be 'offline', 'local' or 'official'"),
    ("detector.precisions", ["float32", "int4"], "detector.precisions: Input should be"),
    ("detector.precisions", ["int8"], "must include float32"),
    ("quant.bits", [8, 5], "quant.bits: Input should be 2, 3, 4 or 8"),
    ("quant.bits", [4, 4], "distinct"),
    ("awq.dtype", "float32", "awq.dtype: Input should be 'auto', 'float16' or 'bfloat16'"),
    ("lm_runtimes.ort.gptq_head", "int2", "lm_runtimes.ort.gptq_head: Input should be 'fp32', 'int8' or 'int4'"),
    ("quant.group_size", 0, "group_size must be > 0 or -1"),
    ("quant.damp_percent", 0, "greater than 0"),
    ("quant.desc_act", "yes", "quant.desc_act: Input should be a valid boolean"),
    ("eval_lm.k", 0, "eval_lm.k: Input should be greater than or equal to 1"),
    ("seed", -1, "seed: Input should be greater than or equal to 0"),
    ("seed", True, "seed: Input should be a valid integer"),
    ("lambada.min_words", 500, "min_words must be <= max_words"),
    ("llm.revision", "main", "llm.revision: String should match pattern"),
    ("bench_det.threads", 0, "bench_det.threads"),
    ("eval_lm.backend", "gptq_fast", "eval_lm.backend: unknown GPTQ kernel 'gptq_fast'"),
    ("eval_lm.backend", "gptq_torch_aten", "kernel gptq_torch_aten cannot run 8-bit weights"),
    ("eval_lm.backend", "gptq_marlin", "kernel gptq_marlin runs on ['cuda'], not cpu"),
    ("eval_lm.backend", {8: "gptq_torch", 4: "gptq_torch_aten"}, "names no kernel for 2-bit weights"),
])
def test_bad_params_are_one_line_errors(path, value, message):
    with pytest.raises(PipelineError) as exc:
        P.validate(with_change(path, value))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_missing_key_is_named():
    with pytest.raises(PipelineError, match="missing key 'quant.calib_size'"):
        P.validate(with_change("quant.calib_size", None, delete=True))


def test_scalar_bits_and_precisions_become_lists():
    assert P.validate(with_change("quant.bits", 4)).quant.bits == [4]  # dvc exp run -S quant.bits=4


def test_load_returns_only_declared_keys_and_records_reads(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(GOOD))
    p = P.load(f, ("seed", "quant.bits"))
    assert p.plain() == {"seed": 0, "quant": {"bits": [8, 4, 2]}}
    with pytest.raises(KeyError):
        p["coco"]
    seen: set = set()
    q = P.select(P.validate(GOOD), ("quant",), seen)
    q["quant"]["group_size"]
    assert seen == {"quant", "quant.group_size"}


def test_invalid_yaml_and_missing_file(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("quant: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        P.read(f)
    with pytest.raises(PipelineError, match="params file not found"):
        P.read(tmp_path / "absent.yaml")


def test_params_rewritten_by_dvc_exp_run_set_param_still_validate(tmp_path):
    """`dvc exp run -S` rewrites params.yaml with ruamel and drops the quotes of "2:4"; read as
    YAML 1.1 that is the integer 124, so the file DVC itself wrote failed check_params."""
    from dvc.utils.serialize import modify_yaml
    f = tmp_path / "params.yaml"
    f.write_text((ROOT / "params.yaml").read_text())
    with modify_yaml(f) as data:       # what `dvc exp run -S quant.bits=4` does to the file
        data["quant"]["bits"] = 4
    assert '"2:4"' not in f.read_text() and "2:4" in f.read_text()
    params = P.validate(P.read(f), f)
    assert params.chains["prune24"].pattern == "2:4" and params.quant.bits == [4]


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
    f = tmp_path / "params.yaml"   # a spawned bench child gets eval_lm.plain(): {4: kernel} must stay int
    f.write_text(yaml.safe_dump(with_change("eval_lm.backend", {8: "gptq_torch", 4: "gptq_torch_aten", 2: "gptq_torch"})))
    ev = P.load(f, ("eval_lm.backend",))["eval_lm"].plain()
    assert ev["backend"] == {8: "gptq_torch", 4: "gptq_torch_aten", 2: "gptq_torch"}
