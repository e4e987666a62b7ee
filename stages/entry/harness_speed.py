"""This project's LAMBADA scoring against lm-evaluation-harness, on one host:
`python -m stages.entry.harness_speed --lm-eval <venv>/bin/lm_eval`.

Both score the first --limit examples of the official LAMBADA file (`lambada.local_path`) with
the same model folder (the base node of --model), float32 on the CPU, each as its own process,
alternating for --repeats rounds; a wall time includes loading the model, as a user waits for it.
- the harness: its own `lambada_openai` task definition, with the dataset pointed at the local
  file (it would download it otherwise), `--model hf`, `--batch_size` (32 as in the issue's run);
- this project: the `lm_eval` stage's own command on a PyTorch build of the same node, with the
  reference rows its fidelity metrics need computed once before the timed rounds.
The two accuracies must be identical (the project claims to score exactly as the harness does),
else this fails. Writes metrics/lm/harness_speed/<model>.json: every wall time, medians, the
ratio, the host and the library versions.

lm-eval is not a project dependency (it pins its own datasets and evaluate stacks); install it
into any virtual environment that sees this project's torch and transformers, e.g.
`python -m venv /tmp/lme && echo "$PWD/.venv/lib/python3.11/site-packages" >
/tmp/lme/lib/python3.11/site-packages/project.pth && /tmp/lme/bin/pip install lm-eval==0.4.13`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from stages.core.errors import PipelineError, log, run_main
from stages.core.files import read_json, require_dir, write_json
from stages.datasets.lambada import read_jsonl
from stages.entry.timed_repro import host

# lm-eval 0.4.13's lambada/lambada_openai.yaml with the dataset read from a local JSONL
TASK = """task: lambada_openai_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
output_type: loglikelihood
test_split: test
doc_to_text: "{{{{text.split(' ')[:-1]|join(' ')}}}}"
doc_to_target: "{{{{' '+text.split(' ')[-1]}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def run(cmd: list[str], log_path: Path) -> float:
    """One process, its output to log_path; its wall time in seconds."""
    t0 = time.monotonic()
    with open(log_path, "w") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if code:
        raise PipelineError(f"{' '.join(cmd[:3])} ... failed (exit {code}); see {log_path}")
    return time.monotonic() - t0


def harness_acc(out_dir: Path) -> float:
    found = sorted(out_dir.rglob("results_*.json"))
    if not found:
        raise PipelineError(f"no harness results under {out_dir}")
    return json.loads(found[-1].read_text())["results"]["lambada_openai_local"]["acc,none"]


def versions(lm_eval: Path) -> dict:
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('lm_eval', 'torch', 'transformers')}))")
    return json.loads(subprocess.check_output([str(lm_eval.parent / "python"), "-c", code], text=True))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lm-eval", required=True, type=Path, help="the harness's lm_eval executable")
    ap.add_argument("--model", default="smollm2-135m", help="a `models` entry; its base node is scored")
    ap.add_argument("--limit", type=int, default=1000, help="the first N official LAMBADA examples")
    ap.add_argument("--repeats", type=int, default=2, help="alternating timed rounds")
    ap.add_argument("--batch-size", type=int, default=32, help="the harness's --batch_size")
    ap.add_argument("--params", default="params.yaml", type=Path)
    ap.add_argument("--out", type=Path, help="default: metrics/lm/harness_speed/<model>.json")
    args = ap.parse_args(argv)
    args.out = args.out or Path("metrics/lm/harness_speed") / f"{args.model}.json"
    if not args.lm_eval.is_file():
        raise PipelineError(f"--lm-eval {args.lm_eval}: not a file (install lm-eval==0.4.13; see --help)")
    node = require_dir(Path("models/lm/nodes") / args.model, "base node (dvc repro lm_source@<model>)")
    raw = yaml.safe_load(args.params.read_text())
    official = Path(raw["lambada"]["local_path"])
    records = [{"text": json.loads(line)["text"]} for line in official.read_text().splitlines()[:args.limit]]
    py = sys.executable

    with tempfile.TemporaryDirectory(prefix="harness-speed-") as tmp:
        tmp = Path(tmp)
        data = tmp / "eval.jsonl"   # the stage's format: {"text", "id"}, checked by its reader
        data.write_text("".join(json.dumps({"text": r["text"], "id": f"official-{i}"}) + "\n"
                                for i, r in enumerate(records)))
        assert len(read_jsonl(data)) == args.limit
        task_dir = tmp / "tasks"
        task_dir.mkdir()
        (task_dir / "lambada_openai_local.yaml").write_text(TASK.format(path=official.resolve()))
        raw["eval_lm"]["limit"] = args.limit
        params = tmp / "params.yaml"
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        variant = f"{args.model}-pytorch"
        if variant not in raw["variants"]:
            raise PipelineError(f"variants has no {variant!r} (the base on PyTorch)")
        build, ref = tmp / "build", tmp / "reference"
        ref.mkdir()
        log.info("building %s and its %d-example reference (untimed)", variant, args.limit)
        run([py, "-m", "stages.entry.lm_build", "--node", str(node), "--runtime", "pytorch", "--variant",
             variant, "--out", str(build), "--metrics", str(tmp / "build.json"), "--params", str(params)],
            tmp / "build.log")
        run([py, "-m", "stages.entry.lm_reference", "--node", str(node), "--data", str(data),
             "--out", str(ref / f"{args.model}.npz"), "--params", str(params)], tmp / "reference.log")

        harness = [str(args.lm_eval), "run", "--model", "hf", "--model_args",
                   f"pretrained={node.resolve()},dtype=float32", "--tasks", "lambada_openai_local",
                   "--include_path", str(task_dir), "--batch_size", str(args.batch_size),
                   "--limit", str(args.limit), "--device", "cpu"]
        walls = {"harness": [], "project": []}
        accs = {"harness": [], "project": []}
        for r in range(args.repeats):
            out = tmp / f"harness-{r}"
            walls["harness"].append(run(harness + ["--output_path", str(out)], tmp / f"harness-{r}.log"))
            accs["harness"].append(harness_acc(out))
            metrics = tmp / f"project-{r}.json"
            walls["project"].append(run([py, "-m", "stages.entry.lm_eval", "--build", str(build), "--data",
                                         str(data), "--reference", str(ref), "--out", str(metrics),
                                         "--params", str(params)], tmp / f"project-{r}.log"))
            accs["project"].append(read_json(metrics)["acc"])
            log.info("round %d: harness %.1f s (acc %.4f), project %.1f s (acc %.4f)", r + 1,
                     walls["harness"][-1], accs["harness"][-1], walls["project"][-1], accs["project"][-1])
        if len(set(accs["harness"] + accs["project"])) != 1:
            for side in ("harness", "project-0"):
                shutil.copy(tmp / f"{side}.log", args.out.with_suffix(f".{side}.log"))
            raise PipelineError(f"accuracies differ: harness {accs['harness']}, project {accs['project']}")
    med = {k: statistics.median(v) for k, v in walls.items()}
    write_json(args.out, {
        "what": f"wall seconds per process, first {args.limit} official LAMBADA examples, {args.model} "
                f"float32 on the CPU, harness --batch_size {args.batch_size}, alternating rounds",
        "acc": accs["project"][0], "wall_s": walls, "median_s": med,
        "speedup": med["harness"] / med["project"], "host": host(), "versions": versions(args.lm_eval)})
    log.info("harness %.1f s, project %.1f s (medians): %.2fx", med["harness"], med["project"],
             med["harness"] / med["project"])


if __name__ == "__main__":
    run_main(main)
