"""The README's experiment commands, run for real in temporary git + DVC repositories.

`pytest -m e2e tests/test_dvc_workflow.py -s` also prints every command's output.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.metric_fixtures import PARAMS, write_metrics

ROOT = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).with_name("dvc")
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not DVC.exists() or not shutil.which("git"), reason="no dvc/git")]

TOY_STAGE = '''"""Toy quantize+eval stage: reads quant.bits (a scalar or a list) like lm_quantize."""
import json, os, yaml
bits = yaml.safe_load(open("params.yaml"))["quant"]["bits"]
bits = bits if isinstance(bits, list) else [bits]
rows = {f"int{b}": {"acc": round(0.05 * b, 3), "size_mb": 12.5 * b} for b in bits}
os.makedirs("metrics", exist_ok=True)
os.makedirs("plots", exist_ok=True)
json.dump({"llm": rows, "higher_is_better": {"llm": {"acc": True, "size_mb": False}}},
          open("metrics/summary.json", "w"), indent=2)
with open("plots/llm.csv", "w") as f:
    f.write("variant,acc,size_mb\\n")
    f.writelines(f"{v},{r['acc']},{r['size_mb']}\\n" for v, r in rows.items())
'''
TOY_DVC = {
    "stages": {"quantize": {
        "cmd": "python quantize.py", "deps": ["quantize.py"], "params": ["quant.bits"],
        "metrics": [{"metrics/summary.json": {"cache": False}}],
        "outs": [{"plots/llm.csv": {"cache": False}}]}},
    "plots": [{"llm_acc": {"template": "bar_variants", "x": "acc",
                           "y": {"plots/llm.csv": "variant"}, "x_label": "acc (0-1)"}}],
}


def sh(repo: Path, command: str, timeout: float = 300) -> str:
    """Run one command exactly as typed in a shell; return stdout+stderr, fail on non-zero."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", COLUMNS="220",
               PATH=f"{DVC.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(shlex.split(command), cwd=repo, env=env, capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    print(f"$ {command}\n{out}")
    assert proc.returncode == 0, f"{command} failed:\n{out}"
    return out


def new_repo(path: Path) -> Path:
    path.mkdir()
    for command in ("git init -q", "git config user.email test@example.com",
                    "git config user.name test", "dvc init -q"):
        sh(path, command)
    (path / ".dvc" / "plots").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / ".dvc" / "plots" / "bar_variants.json", path / ".dvc" / "plots")
    return path


def commit(repo: Path, message: str) -> None:
    sh(repo, "git add -A")
    sh(repo, f"git commit -q -m '{message}'")


def wait_for_queue(repo: Path, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = sh(repo, "dvc queue status")
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(2)
    raise AssertionError(f"queue still busy after {timeout} s:\n{status}")


def test_experiment_commands_in_a_toy_repo(tmp_path):
    repo = new_repo(tmp_path / "toy")
    (repo / "quantize.py").write_text(TOY_STAGE)
    (repo / "params.yaml").write_text("quant:\n  bits: [8, 4, 2]\n")
    (repo / "dvc.yaml").write_text(yaml.safe_dump(TOY_DVC, sort_keys=False))
    sh(repo, "dvc repro")
    commit(repo, "baseline")

    out = sh(repo, "dvc exp run -S quant.bits=4")
    assert "Ran experiment(s)" in out
    assert yaml.safe_load((repo / "params.yaml").read_text())["quant"]["bits"] == 4  # scalar
    assert list(json.loads((repo / "metrics/summary.json").read_text())["llm"]) == ["int4"]

    out = sh(repo, "dvc exp run --queue -S 'quant.bits=8,4,2'")
    assert out.count("Queued experiment") == 3  # a sweep: one experiment per value
    for bits in (8, 4, 2):
        assert f"'quant.bits={bits}'" in out
    assert "Started '2' new experiments task queue workers" in sh(repo, "dvc queue start -j 2")
    assert wait_for_queue(repo).count("Success") == 3

    shown = sh(repo, "dvc exp show")
    assert "llm.int4.acc" in shown and "quant.bits" in shown and "Success" in shown
    table = list(csv.DictReader(io.StringIO(sh(repo, "dvc exp show --csv"))))
    queued = {row["quant.bits"]: row["Experiment"] for row in table if row["State"] == "Success"}
    assert set(queued) == {"8", "4", "2"}  # scalar bits in each queued experiment
    assert next(r for r in table if r["Experiment"] == queued["2"])["llm.int2.acc"] == "0.1"

    diff = sh(repo, "dvc metrics diff")  # HEAD (bits [8, 4, 2]) vs workspace (bits 4)
    assert "llm.int8.acc" in diff and "llm.int2.size_mb" in diff
    diff = sh(repo, f"dvc metrics diff {queued['8']} {queued['2']}")
    assert "llm.int8.acc" in diff and "llm.int2.acc" in diff

    out = sh(repo, f"dvc plots diff {queued['8']} {queued['2']}")
    assert "dvc_plots/index.html" in out and (repo / "dvc_plots" / "index.html").is_file()
    data = json.loads(sh(repo, f"dvc plots diff {queued['8']} {queued['2']} --json"))["data"]
    plot = data["llm_acc"][0]
    assert plot["revisions"] == [queued["8"], queued["2"]]
    values = plot["content"]["data"]["values"]
    assert [(v["variant"], v["rev"]) for v in values] == [("int8", queued["8"]),
                                                         ("int2", queued["2"])]


def test_plots_section_of_dvc_yaml_compares_two_revisions(tmp_path, monkeypatch):
    """The real top-level `plots:` of dvc.yaml on aggregate's real CSVs, two commits."""
    repo = new_repo(tmp_path / "plots")
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(
        {"metrics": ["metrics/summary.json"], "plots": plots}, sort_keys=False))
    from stages.entry import aggregate
    monkeypatch.setattr(aggregate.export, "write_png", lambda *a: None)
    monkeypatch.setattr(aggregate.export, "find_browser", lambda: "chromium (unused)")
    for name, ground_truth in (("offline", False), ("local", True)):
        write_metrics(tmp_path / name / "metrics", ground_truth=ground_truth)
        (tmp_path / name / "params.yaml").write_text(yaml.safe_dump(PARAMS))
        aggregate.main(["--metrics", str(tmp_path / name / "metrics"), "--summary",
                        str(repo / "metrics" / "summary.json"), "--plots", str(repo / "plots"),
                        "--params", str(tmp_path / name / "params.yaml")])
        shutil.rmtree(repo / "plots" / "html")
        commit(repo, name)
    assert "dvc_plots/index.html" in sh(repo, "dvc plots show")
    diff = sh(repo, "dvc metrics diff HEAD~1 HEAD")
    assert "detector.int8.AP" in diff
    data = json.loads(sh(repo, "dvc plots diff HEAD~1 HEAD --json"))["data"]
    assert set(data) == {next(iter(p)) for p in plots}
    for name, (plot,) in data.items():
        spec = plot["content"]
        assert plot["revisions"] == ["HEAD~1", "HEAD"]
        cfg = next(p for p in plots if next(iter(p)) == name)[name]
        if cfg.get("template") != "bar_variants":   # scatter plots (runtime axis): DVC's defaults
            continue
        assert spec["encoding"]["y"]["sort"] is None and spec["encoding"]["x"]["scale"]["zero"]
        variants = [v["variant"] for v in spec["data"]["values"] if v["rev"] == "HEAD"]
        csv_path = next(iter(next(p for p in plots if next(iter(p)) == name)[name]["y"]))
        rows = list(csv.DictReader((repo / csv_path).open()))
        expected = (["float32", "float16", "int8", "int16x8", "dynamic_int8", "onnxruntime-float32",
                     "onnxruntime-int8", "openvino-float32", "openvino-int8"]
                    if name.startswith("detector") else [r["variant"] for r in rows])   # lm.csv's own order
        assert variants == expected, name
        x = spec["encoding"]["x"]["field"]
        assert all(x in v for v in spec["data"]["values"]), name
