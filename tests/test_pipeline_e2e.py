"""The real dvc.yaml on a tiny configuration, in a git + DVC copy of this working tree:
`dvc repro`, a no-op second `dvc repro`, bad params through `dvc repro` (nothing lost),
`dvc exp run -S quant.bits=4`, `dvc metrics diff`, and a second clone at another path
giving the same hashes. `pytest -m e2e tests/test_pipeline_e2e.py -s` prints every command."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.test_dvc_workflow import DVC, commit, sh

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not DVC.exists() or not shutil.which("git"), reason="no dvc/git")]
TINY = {  # every stage runs, each in seconds to a minute on 2 cores
    "coco": {"num_images": 2}, "detector": {"precisions": ["float32", "int8"], "calib_size": 3,
                                         "runtimes": ["onnxruntime-int8", "openvino-float32"]},
    "bootstrap": {"samples": 20}, "bench_det": {"warmup": 1, "latency_runs": 3},
    "lambada": {"calib_articles": 64},
    "quant": {"bits": [8], "calib_size": 4, "calib_seq_len": 16},
    "eval_lm": {"limit": 12, "batch_size": 4},
    "bench_lm": {"decode_tokens": 4, "prefill_tokens": 16, "speed_repeats": 1, "score_examples": 4,
                 "sweep": {"kernels": ["gptq_torch"], "decode_tokens": 2, "prefill_tokens": 8,
                           "repeats": 1}},
    "lm_runtimes": {"variants": ["ort-int4", "ort-gptq"], "limit": 4,
                    "llamacpp": {"variants": ["q4_0"], "threads": 2},
                    "openvino": {"variants": ["int4"], "group_size": 64, "ratio": 1.0}},
    "distill": {"steps": 2, "batch_size": 2, "seq_len": 16},   # chains: params.yaml's default set but awq
}
DATA_STAGES = ("coco_data", "det_export", "lambada_data", "lm_export")


def tiny_params() -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        raw[section].update(values)
    # AWQ on the real SmolLM2 took 629-652 s here on 99 calibration tokens (30 layers of grid
    # searches), a risk to this repro's 1,500 s timeout (not timed here with the other stages).
    # tests/test_lm_awq*.py run AWQ through lm_chain on the tiny model.
    raw["chains"].pop("awq")
    return raw


def copy_tree(dest: Path) -> Path:
    """This working tree's tracked and untracked-but-not-ignored files, as a new git repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    (dest / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    (dest / "dvc.lock").unlink(missing_ok=True)
    for command in ("git init -q", "git config user.email t@example.com", "git config user.name t"):
        sh(dest, command)
    commit(dest, "tiny")
    return dest


def dvc(repo: Path, command: str, ok: bool = True, timeout: float = 1500) -> str:
    env_cmd = f"env STAGES_PARAMS_TRACE={repo / 'trace.jsonl'} {command}"
    if ok:
        return sh(repo, env_cmd, timeout=timeout)
    proc = subprocess.run(env_cmd, shell=True, cwd=repo, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": f"{DVC.parent}:/usr/bin:/bin",
                                                "HOME": str(Path.home()), "DVC_NO_ANALYTICS": "1"})
    assert proc.returncode != 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def lock_outs(repo: Path) -> dict[str, list]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name: [(o["path"], o.get("md5")) for o in st.get("outs", [])] for name, st in lock.items()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    r = copy_tree(tmp_path_factory.mktemp("clone_a"))
    out = dvc(r, "dvc repro")
    assert "Running stage 'aggregate'" in out
    return r


def test_repro_runs_every_stage_and_second_repro_is_a_no_op(repo):
    assert json.loads((repo / "metrics" / "summary.json").read_text())["llm"]["int8"]["acc_ci95"]
    assert "Data and pipelines are up to date." in dvc(repo, "dvc repro")


def test_every_stage_reads_each_param_it_declares(repo):
    records = [json.loads(line) for line in (repo / "trace.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in records} >= {"coco_data", "det_convert", "det_convert_rt",
                                            "det_eval", "det_bench", "det_agreement", "lm_chain",
                                            "lm_quantize", "lm_rtn", "lm_eval", "lm_bench", "aggregate",
                                            "lm_build_ort", "lm_eval_ort", "lm_bench_ort",
                                            "lm_build_gguf", "lm_eval_gguf", "lm_bench_gguf",
                                            "lm_build_ov", "lm_eval_ov", "lm_bench_ov"}
    # the items of a foreach stage share one params list in dvc.yaml (ov-int4 reads the NNCF
    # knobs, ov-fp32 does not): a declared key counts as read when some item read it, or a key below it
    groups: dict[tuple, set] = {}
    for r in records:
        groups.setdefault((r["stage"], tuple(r["declared"])), set()).update(r["read"])
    unread = {stage: [k for k in declared if not any(s == k or s.startswith(k + ".") for s in read)]
              for (stage, declared), read in groups.items()}
    assert not {s: u for s, u in unread.items() if u}, "stages declare params in dvc.yaml they never read"


@pytest.mark.parametrize("change, message", [
    (lambda p: p["coco"].update(source="nonsense"), "coco.source: Input should be"),
    (lambda p: p["quant"].update(bit=4), "unknown key 'quant.bit' (did you mean 'quant.bits'?)"),
    (lambda p: p["detector"].update(precisions=["float32", "int8", "int4"]), "detector.precisions"),
    (lambda p: p["detector"].update(runtimes=["openvino-float16"]), "unsupported (runtime, precision)"),
    (lambda p: p["eval_lm"].update(topk=3), "did you mean 'eval_lm.k'?"),
    (lambda p: p["chains"].update({"x": {"input": "prune+gptq", "method": "prune"}}), "cannot prune after"),
    (lambda p: p["prune"].update(sparsity=1.0), "prune.sparsity"),
])
def test_bad_param_through_dvc_repro_is_one_line_and_removes_nothing(repo, change, message):
    before = {p: p.stat().st_mtime_ns for d in ("data", "models", "metrics")
              for p in (repo / d).rglob("*") if p.is_file() and p.name != "params.ok"}
    good = (repo / "params.yaml").read_text()
    raw = yaml.safe_load(good)
    change(raw)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        out = dvc(repo, "dvc repro", ok=False)
    finally:
        (repo / "params.yaml").write_text(good)
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], out
    assert "Running stage 'coco_data'" not in out and "Running stage 'det_convert" not in out
    after = {p: p.stat().st_mtime_ns for d in ("data", "models", "metrics")
             for p in (repo / d).rglob("*") if p.is_file() and p.name != "params.ok"}
    assert after == before


def test_exp_run_reruns_only_the_quantization_branch_and_metrics_diff(repo):
    dvc(repo, "dvc repro")  # restores params.ok after the failed runs above
    out = dvc(repo, "dvc exp run -S quant.bits=4")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    # the GPTQ branch, including the GPTQ weights on ONNX Runtime; lm_build_ort@ort-int4 re-runs
    # too because a foreach gives every item the same deps (models/llm/gptq for ort-gptq), but
    # its output does not change, so nothing after it re-runs
    assert ran - {"check_params"} == {"lm_quantize", "lm_eval@gptq", "lm_bench@gptq", "aggregate",
                                      "lm_rtn", "lm_eval@rtn", "lm_bench@rtn",
                                      "lm_build_ort@ort-gptq", "lm_eval_ort@ort-gptq",
                                      "lm_bench_ort@ort-gptq", "lm_build_ort@ort-int4"}
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    # PyTorch rows: only the new width; the ONNX Runtime rows stay (ort-gptq-<bits> follows quant.bits)
    assert [k for k in summary["llm"] if not k.startswith("ort-")][:3] == ["base", "int4", "rtn-int4"]
    assert {"llamacpp-q4_0", "ov-int4"} <= set(summary["llm"])   # other runtimes: untouched, still there
    assert "int8" not in summary["llm"] and "prune+gptq-int4" in summary["llm"]  # chains: own bits
    assert [k for k in summary["llm"] if k.startswith("ort-gptq")] == ["ort-gptq-int4"]
    diff = sh(repo, "dvc metrics diff")
    assert "llm.int4.acc" in diff and "llm.int8.acc" in diff


def test_a_clone_at_another_path_gives_the_same_hashes(repo, tmp_path):
    other = copy_tree(tmp_path / "deeper" / "clone_b")
    dvc(other, "dvc repro " + " ".join(DATA_STAGES))
    a, b = lock_outs(repo), lock_outs(other)
    for stage in DATA_STAGES:
        assert a[stage] == b[stage], stage
