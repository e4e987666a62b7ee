"""The real dvc.yaml on a tiny configuration, in a git + DVC copy of this working tree: a tiny
random Llama from a local folder as the only language model, the real detector on 2 images.
`dvc repro`, a no-op second `dvc repro`, bad params through `dvc repro` (nothing lost),
`dvc exp run -S quant.bits=4`, `dvc metrics diff`, the DAG's per-item dependencies (a
runtime's knob or plugin re-runs only its stages; a builder-quantized variant never waits on
GPTQ), and a second clone at another path giving the same hashes.
`pytest -m e2e tests/test_pipeline_e2e.py -s` prints every command."""
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
TINY = {  # every stage runs, each in seconds on 2 cores
    "coco": {"num_images": 2}, "detector": {"precisions": ["float32"], "calib_size": 3,
                                         "runtimes": ["onnxruntime-int8"]},
    "bootstrap": {"samples": 20}, "bench_det": {"warmup": 1, "latency_runs": 3},
    "lambada": {"calib_articles": 64},
    "eval_lm": {"limit": 12},
    "bench_lm": {"decode_tokens": 4, "prefill_tokens": 32, "speed_repeats": 1},
    "classifier": {"max_len": 16, "train": {"epochs": 1, "lr": 1.0e-4, "batch_size": 64, "weight_decay": 0.0, "threads": 2},
                   "nodes": {"distill": {"method": "distill", "input": "fp32", "layers": 2, "epochs": 1}},
                   "variants": {"fp32-pytorch": {"node": "fp32", "runtime": "pytorch", "precision": "fp32"},
                                "distill-int8-onnxruntime": {"node": "distill", "runtime": "onnxruntime",
                                                             "precision": "int8_static"}},
                   "bench": {"threads": 2, "batch": 4, "warmup": 1, "runs": 3}},
}
LM = {
    "models": {"tiny": {"architecture": "LlamaForCausalLM", "weights": {"source": "local", "path": "tiny-lm"}}},
    "quant": {"models": ["tiny"], "methods": ["gptq"], "bits": [8], "runtimes": ["pytorch"]},
    "methods": {"gptq": {"calib_size": 4, "calib_seq_len": 16}, "rtn": {"group_size": 32},
                "prune": {"sparsity": 0.5}, "distill": {"steps": 2, "batch_size": 2, "seq_len": 16}},
    "compress": {"tiny-prune": {"model": "tiny", "input": "tiny", "method": "prune"},
                 "tiny-prune+distill": {"model": "tiny", "input": "tiny-prune", "method": "distill",
                                        "drop_every": 0}},
    "runtimes": {"pytorch": {}, "ort_genai": {"block_size": 32}, "llamacpp": {}, "openvino": {"group_size": 32}},
    "variants": {"tiny-pytorch": {"node": "tiny", "runtime": "pytorch"},
                 "tiny-ort-int4": {"node": "tiny", "runtime": "ort_genai", "precision": "int4"},
                 "tiny-llamacpp-q8_0": {"node": "tiny", "runtime": "llamacpp", "precision": "q8_0"},
                 "tiny-prune+distill-pytorch": {"node": "tiny-prune+distill", "runtime": "pytorch"}},
}
DATA_STAGES = ("coco_data", "det_export", "lambada_data", "lm_source@tiny")


def tiny_params() -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        raw[section].update(values)
    raw.update(LM, host="host-a")
    return raw


def copy_tree(dest: Path, model: Path) -> Path:
    """This working tree's tracked and untracked-but-not-ignored files, as a new git repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for rel in filter(None, files):
        if (ROOT / rel).is_file() and not rel.startswith(("metrics/lm/", "metrics/detector/", "metrics/cls/")):   # this DAG writes its own
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    shutil.copytree(model, dest / "tiny-lm")
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


def ran(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


def failing_repro(repo: Path, change) -> str:
    """The output of a `dvc repro` that must fail, run with params.yaml edited by `change(raw)`;
    the good params.yaml is put back whatever happens."""
    good = (repo / "params.yaml").read_text()
    raw = yaml.safe_load(good)
    change(raw)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        return dvc(repo, "dvc repro", ok=False)
    finally:
        (repo / "params.yaml").write_text(good)


def stale(repo: Path) -> set[str]:
    """Stages `dvc status` reports as changed."""
    return set(json.loads(sh(repo, "dvc status --json").strip().splitlines()[-1]))


def lock_outs(repo: Path) -> dict[str, list]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name: [(o["path"], o.get("md5")) for o in st.get("outs", [])] for name, st in lock.items()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_hf) -> Path:
    r = copy_tree(tmp_path_factory.mktemp("clone_a"), tiny_hf)
    out = dvc(r, "dvc repro")
    assert "Running stage 'aggregate'" in out
    commit(r, "results")   # as a user commits a run before experimenting on it
    return r


def test_repro_runs_every_stage_and_second_repro_is_a_no_op(repo):
    lm = json.loads((repo / "metrics" / "summary.json").read_text())["lm"]
    assert {r["variant"] for r in lm.values()} >= {"gptq-int8 · pytorch", "base · ort_genai int4",
                                                   "prune 50%+distill · pytorch fp32", "base · llamacpp q8_0"}
    assert all(r["acc_ci95"] and r["model"] == "tiny" for r in lm.values())
    assert "Data and pipelines are up to date." in dvc(repo, "dvc repro")



def tree(repo: Path, *dirs: str) -> dict[str, bytes]:
    """Every file under `dirs`, by path relative to the repo: the outputs, byte for byte."""
    return {p.relative_to(repo).as_posix(): p.read_bytes() for d in dirs
            for p in sorted((repo / d).rglob("*")) if p.is_file()}


def test_a_clone_pulls_from_a_shared_remote_and_reruns_nothing(repo, tmp_path):
    """A team's cache: clone A pushes its outputs and run-cache to a shared-folder remote, a
    git clone B at another path pulls, and `dvc repro` in B runs nothing (docs/pipeline.md)."""
    remote = tmp_path / "shared-remote"
    sh(repo, f"dvc remote add --local shared {remote}")
    sh(repo, "dvc push -r shared --run-cache")
    b = tmp_path / "team" / "clone_b"
    sh(tmp_path, f"git clone -q {repo} {b}")
    sh(b, f"dvc remote add --local shared {remote}")
    sh(b, "dvc pull -r shared --run-cache")
    out = dvc(b, "dvc repro")
    assert not ran(out) and "Data and pipelines are up to date." in out, out
    assert tree(b, "data", "models", "metrics", "plots") == tree(repo, "data", "models", "metrics", "plots")


def bad_source(kind: str, raw: dict, bad: Path) -> None:
    """params that point one source at bad content outside the repo."""
    bad.mkdir(parents=True, exist_ok=True)
    if kind == "lambada":   # an empty local LAMBADA file
        (bad / "empty.jsonl").write_text("")
        raw["lambada"].update(source="local", local_path=str(bad / "empty.jsonl"))
    elif kind == "coco":    # annotations that are not JSON
        (bad / "images").mkdir(exist_ok=True)
        (bad / "instances.json").write_text("not json {")
        raw["coco"].update(source="local", local={"images": str(bad / "images"), "annotations":
                                                  str(bad / "instances.json"), "calib_images": str(bad / "images")})
    elif kind == "model":   # a local model folder whose config.json is truncated
        (bad / "model").mkdir(exist_ok=True)
        (bad / "model" / "config.json").write_text('{"architectures": ["LlamaFor')
        (bad / "model" / "model.safetensors").write_bytes(b"")
        (bad / "model" / "tokenizer.json").write_text("{}")
        raw["models"]["tiny"]["weights"] = {"source": "local", "path": str(bad / "model")}
    elif kind == "classifier":   # a local labelled JSONL with a line that has no label
        (bad / "labelled.jsonl").write_text('{"text": "fine", "label": "a"}\n{"text": "no label"}\n')
        raw["classifier"]["data"].update(source="local", local_path=str(bad / "labelled.jsonl"))
    else:                   # a Hub model that cannot be resolved (no such repo, or no network)
        raw["models"]["tiny"]["weights"] = {"source": "hub", "id": "no-such-org/no-such-model", "revision": "main"}


SLOW = pytest.mark.slow   # the same check on one more input: run before a stop (-m slow)


@pytest.mark.parametrize("kind, stage", [("lambada", "check_params"),
                                         pytest.param("coco", "check_params", marks=SLOW),
                                         pytest.param("model", "check_params", marks=SLOW),
                                         pytest.param("classifier", "check_params", marks=SLOW),
                                         ("hub", "lm_source@tiny")])
def test_bad_source_through_dvc_repro_loses_nothing(repo, tmp_path, kind, stage):
    """Bad content read in place stops the params check; a source that only its stage can reach
    (the Hub) fails inside the stage, whose persisted outputs stay. Either way: one line, no
    traceback, every output byte-identical, no temporary folder left, and dvc.lock unchanged but
    for the params check's record of the params it passed."""
    dvc(repo, "dvc repro")   # params.ok back after the failed runs above
    before, lock = tree(repo, "data", "models", "metrics"), (repo / "dvc.lock").read_text()
    out = failing_repro(repo, lambda raw: bad_source(kind, raw, tmp_path / "bad"))
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in out, out
    assert [s for s in out.splitlines() if s.startswith("Running stage")][-1] == f"Running stage '{stage}':"
    assert tree(repo, "data", "models", "metrics") == before
    old, new = (yaml.safe_load(x)["stages"] for x in (lock, (repo / "dvc.lock").read_text()))
    assert {s for s in old.keys() | new.keys() if old.get(s) != new.get(s)} <= \
        ({"check_params"} if stage != "check_params" else set())
    assert not [p for p in repo.rglob(".tmp-*") if ".dvc" not in p.parts]


def test_every_stage_reads_each_param_it_declares(repo):
    records = [json.loads(line) for line in (repo / "trace.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in records} >= {"coco_data", "det_convert", "det_convert_rt", "det_eval",
                                            "det_bench", "det_agreement", "lm_source", "lm_compress",
                                            "lm_build", "lm_eval", "lm_bench", "aggregate"}
    groups: dict[tuple, set] = {}
    for r in records:
        groups.setdefault((r["stage"], tuple(r["declared"])), set()).update(r["read"])
    unread = {stage: [k for k in declared if not any(s == k or s.startswith(k + ".") for s in read)]
              for (stage, declared), read in groups.items()}
    assert not {s: u for s, u in unread.items() if u}, "stages declare params in dvc.yaml they never read"


@pytest.mark.parametrize("change, message", [   # an unknown choice, a typo'd key, an unsupported pair
    (lambda p: p["coco"].update(source="nonsense"), "coco.source: Input should be"),
    (lambda p: p["quant"].update(bit=4), "quant.bit"),
    (lambda p: p["detector"].update(runtimes=["openvino-float16"]), "unsupported (runtime, precision)"),
    *(pytest.param(change, message, marks=SLOW) for change, message in [   # the schema's unit tests cover these too
        (lambda p: p["eval_lm"].update(topk=3), "did you mean 'eval_lm.k'?"),
        (lambda p: p["runtimes"]["ort_genai"].update(blok_size=32), "did you mean 'block_size'?"),
        (lambda p: p["methods"]["prune"].update(sparsity=1.0), "sparsity"),
        (lambda p: p["variants"].update(x={"node": "tiny-gptq8", "runtime": "openvino"}), "is a quant sweep width"),
        (lambda p: p["variants"].update(x={"node": "tiny-prune", "runtime": "llamacpp", "precision": "q9"}), "precision"),
        (lambda p: p["compress"].update(x={"model": "tiny", "input": "tiny-nope", "method": "prune"}), "tiny-nope"),
    ]),
])
def test_bad_param_through_dvc_repro_is_one_line_and_removes_nothing(repo, change, message):
    before = {p: p.stat().st_mtime_ns for d in ("data", "models", "metrics")
              for p in (repo / d).rglob("*") if p.is_file() and p.name != "params.ok"}
    out = failing_repro(repo, change)
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], out
    assert "Running stage 'coco_data'" not in out and "Running stage 'lm_" not in out
    after = {p: p.stat().st_mtime_ns for d in ("data", "models", "metrics")
             for p in (repo / d).rglob("*") if p.is_file() and p.name != "params.ok"}
    assert after == before


def test_a_runtime_knob_or_plugin_reruns_only_that_runtimes_stages(repo):
    dvc(repo, "dvc repro")  # restores params.ok after the failed runs above
    good = (repo / "params.yaml").read_text()
    raw = yaml.safe_load(good)
    raw["runtimes"]["ort_genai"]["block_size"] = 64
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        changed = stale(repo) - {"check_params"}
    finally:
        (repo / "params.yaml").write_text(good)
    # eval/bench follow their build once it has re-run; status names the stages whose own inputs moved
    assert changed == {"lm_build@tiny-ort-int4"}
    plugin = repo / "stages" / "runtimes" / "lm" / "llamacpp.py"
    text = plugin.read_text()
    plugin.write_text(text + "\n# an edit of the llama.cpp plugin\n")
    try:   # aggregate reads every plugin (the report's grid of what each one supports)
        changed = stale(repo) - {"check_params", "aggregate"}
    finally:
        plugin.write_text(text)
    assert changed == {f"lm_{s}@tiny-llamacpp-q8_0" for s in ("build", "eval", "bench")}


def test_exp_run_reruns_only_the_new_width_and_metrics_diff(repo):
    out = dvc(repo, "dvc exp run -S quant.bits=4")
    assert ran(out) - {"check_params", "aggregate"} == {"lm_quant@tiny-gptq"} | {
        f"lm_sweep_{s}@tiny-gptq-pytorch" for s in ("build", "eval", "bench")}   # the sweep's stages, now at 4 bits only
    lm = json.loads((repo / "metrics" / "summary.json").read_text())["lm"]
    assert "tiny-gptq-pytorch/int4" in lm and "tiny-gptq-pytorch/int8" not in lm
    assert "tiny-ort-int4" in lm and "tiny-prune+distill-pytorch" in lm   # the rest stays
    diff = sh(repo, "dvc metrics diff")   # the headline files: a row per variant and metric
    rows = [line.split() for line in diff.splitlines()]
    assert ["metrics/headline/lm/tiny-gptq-pytorch/int4.json", "acc"] in [r[:2] for r in rows]   # new
    assert ["metrics/headline/lm/tiny-gptq-pytorch/int8.json", "acc"] in [r[:2] for r in rows]   # gone


@pytest.mark.slow   # a second DAG build from nothing (the remote test's clone B re-runs nothing at another path)
def test_a_clone_at_another_path_gives_the_same_hashes_and_builds_without_gptq(repo, tmp_path, tiny_hf):
    other = copy_tree(tmp_path / "deeper" / "clone_b", tiny_hf)
    out = dvc(other, "dvc repro " + " ".join(DATA_STAGES) + " lm_build@tiny-ort-int4")
    assert not {s for s in ran(out) if s.startswith(("lm_quant", "lm_compress"))}   # no GPTQ for it
    a, b = lock_outs(repo), lock_outs(other)
    for stage in DATA_STAGES:
        assert a[stage] == b[stage], stage


def test_two_hosts_share_one_remote_and_one_report(repo, tmp_path):
    """The fleet recipe (docs/pipeline.md): a second machine pulls everything, times only the
    benchmarks under its own host name (`dvc exp run -S host=...`), pushes that experiment; the
    aggregating clone takes its bench folders and one aggregate shows both hosts side by side."""
    remote = tmp_path / "fleet-remote"
    sh(repo, f"dvc remote add --local -d fleet {remote}")
    sh(repo, "dvc push --all-commits --run-cache")   # every commit's outputs: B checks out HEAD
    b = tmp_path / "machine_b" / "clone"
    sh(tmp_path, f"git clone -q {repo} {b}")
    sh(b, f"dvc remote add --local -d fleet {remote}")
    sh(b, "dvc pull")
    out = dvc(b, "dvc exp run -n host-b -S host=host-b")
    timed = ran(out) - {"check_params", "aggregate", "cls_report"}   # the reports read the host too
    assert timed and all(s.startswith(("det_bench", "lm_bench", "lm_sweep_bench", "cls_bench")) for s in timed), timed
    assert (b / "metrics" / "lm" / "bench" / "host-b" / "tiny-pytorch.json").is_file()
    sh(b, "dvc exp push origin host-b")   # origin: the shared git remote (clone A here)
    ref = next(r for r in sh(repo, "git for-each-ref --format=%(refname) refs/exps").split() if r.endswith("/host-b"))
    sh(repo, f"git checkout {ref} -- metrics/lm/bench/host-b metrics/detector/bench/host-b")
    assert ran(dvc(repo, "dvc repro")) == {"aggregate"}
    report = (repo / "plots" / "report.md").read_text()
    section = report[report.index("## Speed per host"):]
    assert "| host-a (" in section and " | host-b (" in section
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert summary["host"] == "host-a" and set(summary["hosts"]) == {"host-a", "host-b"}

