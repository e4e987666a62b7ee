"""stages/entry/lm_full_set.py: a built variant scored on every example of a file through its
runtime, paired against an int4 frontier's base rows. The paired difference must be the
per-example difference of the two hit strings, and a frontier scored on another set is refused
before the model is opened."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.entry import lm_build, lm_full_set
from stages.models import lm_record
from tests.test_lm_models import TEXTS, write_jsonl, write_params


@pytest.fixture(scope="module")
def built(tiny_hf, tmp_path_factory):
    root = tmp_path_factory.mktemp("full-set")
    node = root / "tiny"
    shutil.copytree(tiny_hf, node)
    lm_record.write(node, {"model": "tiny", "architecture": "LlamaForCausalLM", "chain": []})
    params = write_params(root)
    lm_build.main(["--node", str(node), "--runtime", "pytorch", "--out", str(root / "tiny-pytorch"),
                   "--metrics", str(root / "build.json"), "--params", str(params)])
    return root / "tiny-pytorch", write_jsonl(root / "eval.jsonl", TEXTS)


def frontier(path, eval_file, hits: str) -> None:
    path.write_text(json.dumps({"eval_file": eval_file.name, "num_examples": len(hits), "device": "cpu",
                                "dtype": "float32", "gpu": None,
                                "rows": {"base": {"acc": hits.count("1") / len(hits), "size_mb": 1.0, "hits": hits}}}))


def test_the_paired_difference_is_the_difference_of_the_hit_strings(built, tmp_path):
    build, data = built
    base_hits = "10" * (len(TEXTS) // 2) + "1" * (len(TEXTS) % 2)
    frontier(tmp_path / "f.json", data, base_hits)
    out = tmp_path / "row.json"
    lm_full_set.main(["--build", str(build), "--frontier", str(tmp_path / "f.json"), "--eval", str(data),
                      "--threads", "1", "--out", str(out)])
    row = json.loads(out.read_text())
    assert row["num_examples"] == len(TEXTS) == len(row["hits"]) and row["variant"] == build.name
    mine = [int(h) for h in row["hits"]]
    assert row["acc"] == pytest.approx(sum(mine) / len(mine))
    want = sum(m - int(b) for m, b in zip(mine, base_hits)) / len(mine)
    assert row["delta_acc"] == pytest.approx(want)
    lo, hi = row["delta_acc_ci95"]
    assert lo <= want <= hi
    assert row["fraction_of_base"] == pytest.approx(row["acc"] / (base_hits.count("1") / len(base_hits)))
    assert row["base"]["device"] == "cpu" and row["host"]["cpu"] and row["versions"]["torch"]


def test_a_frontier_of_another_set_is_refused_before_the_model_opens(built, tmp_path, monkeypatch):
    build, data = built
    frontier(tmp_path / "f.json", data, "1" * (len(TEXTS) + 1))
    from stages.runtimes.lm.base import LmRuntime

    monkeypatch.setattr(LmRuntime, "open", lambda *a, **k: pytest.fail("opened the model"))
    with pytest.raises(PipelineError, match=f"the frontier scored {len(TEXTS) + 1} examples .* not paired"):
        lm_full_set.main(["--build", str(build), "--frontier", str(tmp_path / "f.json"), "--eval", str(data),
                          "--out", str(tmp_path / "row.json")])
    assert not (tmp_path / "row.json").exists()


def test_the_committed_rows_follow_from_their_hits_and_the_frontier_base():
    """Each committed row was paired with its model's committed frontier base (same examples),
    and names a variant params.yaml still builds the same way."""
    repo = Path(__file__).parents[1]
    variants = yaml.safe_load((repo / "params.yaml").read_text())["variants"]
    root = repo / "metrics" / "lm" / "int4_frontier"
    for path in sorted((root / "runtimes").glob("*.json")):
        row = json.loads(path.read_text())
        frontier = json.loads((root / f"{row['record']['model']}.json").read_text())
        hits, ref = row["hits"], frontier["rows"]["base"]["hits"]
        assert len(hits) == len(ref) == row["num_examples"] == frontier["num_examples"], path.name
        assert row["eval_file"] == frontier["eval_file"] and row["base"]["acc"] == frontier["rows"]["base"]["acc"]
        assert row["acc"] == pytest.approx(hits.count("1") / len(hits))
        assert row["delta_acc"] == pytest.approx((hits.count("1") - ref.count("1")) / len(hits))
        assert row["fraction_of_base"] == pytest.approx(row["acc"] / frontier["rows"]["base"]["acc"])
        v = variants[row["variant"]]
        assert (v["runtime"], v.get("precision")) == (row["record"]["runtime"], row["record"]["knobs"].get("precision"))
