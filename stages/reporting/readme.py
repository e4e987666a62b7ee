"""The README's results tables, rendered from the committed metrics/summary.json (a test
checks that the README block equals this rendering, so its figures are never hand-typed)."""
from __future__ import annotations

from stages.reporting import cls, gpu as gpu_tables, gpu_distill, gpu_methods, lm_gate, lm_render
from stages.reporting.specs import DETECTOR_METRICS
from stages.reporting.tables import cell, label, ratio_lines

START, END = "<!-- results:start (python -m stages.entry.readme) -->", "<!-- results:end -->"
QUICK_START, QUICK_END = "<!-- quickstart:start (python -m stages.entry.readme) -->", "<!-- quickstart:end -->"
GPU_START, GPU_END = "<!-- gpu:start (python -m stages.entry.readme) -->", "<!-- gpu:end -->"
CLS_START, CLS_END = "<!-- cls:start (python -m stages.entry.readme) -->", "<!-- cls:end -->"
DET_KEYS = ("agreement_mAP", "AP", "AP50", "latency_ms_median", "images_per_s", "size_mb")


def _table(rows: dict, metrics, keys, k="k") -> list[str]:
    ms = [next(m for m in metrics if m.key == key) for key in keys]
    out = ["| variant | " + " | ".join(label(m, k) for m in ms) + " |", "|---" * (len(ms) + 1) + "|"]
    out += [f"| `{v}` | " + " | ".join(cell(m, r) for m in ms) + " |" for v, r in rows.items()]
    return out


def render(summary: dict, k: int) -> str:
    lines, lms = [START], summary["lm"]
    if "verdict" in summary:   # the deployment gate heads the results
        legend = lm_gate.legend(lms, summary["verdict"]["pass_fraction"])
        lines += ["", "**Which language-model variant can ship.** " + " ".join(x for x in legend if x)]
        for model in sorted({r["model"] for r in lms.values()}):
            lines += ["", f"`{model}`:", ""] + lm_gate.matrix(lms, model)
    lines += ["", "Detector (brackets: 95% bootstrap interval over images):", ""]
    lines += _table(summary["detector"], DETECTOR_METRICS, DET_KEYS)
    ratios = ratio_lines(summary["detector"])
    lines += ["", "Median invoke latency, int8 ÷ float32 per runtime (one run):", ""] + ratios \
        if ratios else []
    for model in sorted({r["model"] for r in summary["lm"].values()}):
        mine = [r for r in summary["lm"].values() if r["model"] == model]
        lines += ["", f"Language model `{model}` on LAMBADA (Δacc: against its base "
                  f"on PyTorch fp32, the same examples; timed on {mine[0]['cpu']}):", ""]
        lines += lm_render.readme_table(summary["lm"], model)
    return "\n".join(lines + ["", END])


LONG_S = 600   # a stage longer than this says why
WHY_LONG = {"lm_quant@": "GPTQ at every `quant.bits` width in one stage, on one thread "
                         "(`methods.gptq.threads`: a fixed count keeps its weights bit-identical run to "
                         "run; 2 threads are too, and 1.6 times faster here, docs/pipeline.md)"}


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _fresh_sentence(fresh: dict, tests: dict | None) -> str:
    """Which fresh clone timed which step. The quick profile may have been re-timed alone, in a
    later clone with the set-up's environment (`fresh_clone --steps quick --venv .venv`): then
    it carries its own commit."""
    where = f"{fresh['cpu']}, {fresh['cores']} cores; `python -m stages.entry.fresh_clone`"
    ended = f"; the tests ended {tests['summary']}" if tests and "summary" in tests else ""
    quick = fresh.get("quick", {})
    if "commit" not in quick:
        return (f"Steps 1, 2 and 4 were timed one after another in a fresh clone (commit "
                f"{fresh['commit'][:7]}, {where}), step 2 on an empty DVC cache{ended}. ")
    return (f"Steps 1 and 4 were timed one after another in a fresh clone (commit {fresh['commit'][:7]}, "
            f"{where}){ended}; step 2 in another (commit {quick['commit'][:7]}) on an empty DVC cache, "
            "with step 1's environment. ")


def render_quickstart(run_time: dict, stages: list[str]) -> str:
    """The commands of a first session, each with its time as measured: the full run from each
    stage's wall time (stages/entry/timed_repro.py), set-up, the quick profile and the tests from
    a fresh clone when one was timed (stages/entry/fresh_clone.py)."""
    timed = {s: run_time["stages"][s] for s in stages if s in run_time["stages"]}
    if not timed:
        raise ValueError("metrics/run_time.json times none of dvc.yaml's stages: "
                         "run them through python -m stages.entry.timed_repro")
    untimed = len(stages) - len(timed)
    cpus = sorted({f"{t['cpu']}, {t['cores']} cores" for t in timed.values()})
    fresh = run_time.get("fresh_clone", {})
    tests = fresh.get("tests") or run_time.get("tests")
    took = lambda step: f": {_duration(step['seconds'])}" if step else ""   # noqa: E731
    run = _duration(sum(t["seconds"] for t in timed.values()))
    lines = [QUICK_START, "", "```bash",
             "bash setup.sh && source .venv/bin/activate  # 1. set up (.venv, pinned wheels)"
             + took(fresh.get("setup")),
             "python -m stages.entry.profile quick         # 2. a first look (below)" + took(fresh.get("quick")),
             f"dvc repro                                    # 3. the whole pipeline, offline default: {run}",
             "python -m pytest                             # 4. the tests" + took(tests), "```", ""]
    said = _fresh_sentence(fresh, tests) if fresh else ""
    lines.append(said + f"Step 3 is the sum of {len(timed)} stages' wall times on {' and '.join(cpus)} "
                 "(metrics/run_time.json, written by `python -m stages.entry.timed_repro`, which wraps "
                 "`dvc repro`)" + (f"; {untimed} of the {len(stages)} stages ran before times were "
                                   "recorded and are not in it" if untimed else "")
                 + ". A second `dvc repro` does nothing.")
    long = sorted(((t["seconds"], s) for s, t in timed.items() if t["seconds"] > LONG_S), reverse=True)
    if long:
        lines += ["", f"Stages over {LONG_S // 60} minutes: " + "; ".join(
            f"`{s}` {_duration(sec)} ({next((why for pre, why in WHY_LONG.items() if s.startswith(pre)), 'no documented reason')})"
            for sec, s in long) + "."]
    return "\n".join(lines + ["", QUICK_END])


def render_gpu(gpu: dict) -> str:
    """The GPU results set (metrics/gpu, stages/reporting/gpu.py), a block of its own."""
    lines = [GPU_START, "", f"Measured on {gpu['machine'].get('gpu', 'GPU')} (driver "
             f"{gpu['machine'].get('driver')}, CUDA {gpu['machine'].get('cuda')}); never mixed into "
             "the CPU tables above. Full report: plots/gpu/report.md.", ""] + gpu_tables.table(gpu)
    lines += ["", gpu_tables.NOTE, ""] + gpu_tables.eval_table(gpu)
    if gpu["methods"]:
        lines += ["", gpu_methods.METHOD_NOTE, ""] + gpu_methods.method_table(gpu)
    if gpu["distill"]:
        lines += ["", gpu_distill.NOTE, ""] + gpu_distill.table(gpu)
    lines += [""] + [f"![{t}](../plots/gpu/png/{s}.png)" for s, t, _ in gpu_tables.figures(gpu)]   # from docs/
    return "\n".join(lines + ["", GPU_END])


def replace_block(readme: str, block: str, start: str = START, end: str = END) -> str:
    head, sep, rest = readme.partition(start)
    if not sep or end not in rest:
        raise ValueError(f"README has no {start} ... {end} block")
    return head + block + rest.split(end, 1)[1]


def render_cls(rows: list[dict]) -> str:
    """The classifier's block, from the committed plots/cls/variants.json."""
    return "\n".join([CLS_START, "", *cls.readme(rows), "", CLS_END])
