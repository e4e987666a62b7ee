"""Accuracy does not depend on the CPU's kernel path or the thread count, so lm_eval pins
neither (only GPTQ and the other weight-writing methods pin them: stages/core/numerics.py).
The same tiny model is scored in fresh processes at 1 and 2 threads, with torch's default
kernel dispatch and with it capped at AVX2: the per-example hits are identical and the logits
agree to float rounding."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, sys
import numpy as np
from stages.runtimes import lm as runtimes
from stages.runtimes.lm.base import tokenizer
from stages.tasks.scoring import encode, score_session
folder, threads, texts = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
session = runtimes.get("pytorch").open(folder, threads, {})
reqs = encode(tokenizer(folder), texts, 256)
rows = []
scores = score_session(session, reqs, 5, lambda i, ids, t: rows.append(t.tolist()))
print(json.dumps({"hits": "".join("1" if s["greedy"] else "0" for s in scores),
                  "loglik": [s["loglik"] for s in scores], "rows": rows}))
"""
TEXTS = [f"The {w} sat on the mat and looked at the {v} for a long time before it left the {w}"
         for w, v in (("cat", "dog"), ("man", "sea"), ("bird", "tree"), ("child", "moon"))] * 3


def score(folder: Path, threads: int, isa: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS")}
    if isa:
        env["ATEN_CPU_CAPABILITY"] = isa
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(folder), str(threads), json.dumps(TEXTS)],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_hits_do_not_depend_on_threads_or_kernel_path(tiny_hf):
    import numpy as np

    runs = {(t, isa): score(tiny_hf, t, isa) for t in (1, 2) for isa in (None, "avx2")}
    first = runs[(1, "avx2")]
    for key, run in runs.items():
        assert run["hits"] == first["hits"], key
        diff = max(float(np.abs(np.array(a) - np.array(b)).max()) for a, b in zip(run["rows"], first["rows"]))
        assert diff < 1e-3, (key, diff)                   # float rounding, not another model
        assert run["loglik"] == pytest.approx(first["loglik"], abs=1e-3)
