"""The int4 frontier analysis (stages/entry/lm_int4_frontier.py) on the tiny memorising Llama:
its hand-written grid is GPTQModel's, the per-layer measurement sees a fragile layer and leaves
the model as it found it, `int8_layers` really keeps those layers at 8 bits, and a run writes
paired rows with a frontier (seconds on CPU)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from stages.core.errors import PipelineError
from stages.entry import lm_int4_frontier as F
from stages.methods import int4_recipes as Q
from stages.runtimes import torch_lm as R
from tests.test_lm_models import CALIB, TEXTS, _dequantized, eager, one_thread, tiny  # noqa: F401

RTN = {"method": "rtn", "bits": 4, "group_size": 32, "sym": False, "desc_act": False,
       "calib_size": 4, "calib_seq_len": 32, "damp_percent": 0.01, "int8_layers": 0}


def test_the_recipes_file_is_valid_and_a_typo_is_one_line(tmp_path):
    from stages.schema.load import load_sections

    cfg = load_sections(Q.RECIPES, ("frontier",), {"frontier": Q.Frontier})["frontier"]
    assert "g64" in cfg["recipes"] and cfg["recipes"]["g64"]["group_size"] == 64
    doc = yaml.safe_load(Q.RECIPES.read_text())
    doc["frontier"]["recipes"]["g64"] = {"grup_size": 32}
    bad = tmp_path / "recipes.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(PipelineError, match=r"recipes\.g64\.grup_size") as err:
        load_sections(bad, ("frontier",), {"frontier": Q.Frontier})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("sym", [True, False])
def test_the_measurement_grid_is_gptqmodels(tiny, tmp_path, sym, eager, one_thread):  # noqa: F811
    """fake_int4 of the base equals the weights GPTQModel's RTN writes, layer by layer, within
    the bfloat16 rounding of the CPU int4 kernel that reads them back (a grid mismatch would be
    a whole step off; the step is 1/15 of a group's range)."""
    dest = tmp_path / "rtn"
    Q.quantize(tiny, RTN | {"sym": sym}, [], [], "cpu", dest)
    base = {n: m.weight.detach() for n, m in R.load(tiny, "cpu")[0].named_modules()
            if isinstance(m, torch.nn.Linear)}
    layers = _dequantized(Q.load_quantized(dest, "cpu"))
    assert len(layers) == 14
    for name, w in layers.items():
        mine = Q.fake_int4(base[name], 32, sym)
        err = (w - mine).abs().reshape(w.shape[0], -1, 32).amax(-1)
        top = mine.abs().reshape(w.shape[0], -1, 32).amax(-1)   # a step is >= top / 15
        assert float((err / top).max()) < 0.02, name            # measured: < 0.01
        assert not torch.equal(Q.fake_int4(base[name], 32, not sym), mine)


def test_sensitivity_finds_the_fragile_layer_and_restores_the_weights(tiny, one_thread):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny)
    passages = [tok(t)["input_ids"][:32] for t in TEXTS[:4]]
    # one outlier per group of layer 1's MLP: its other weights fall to one or two grid points
    mlp = model.model.layers[1].mlp.down_proj.weight.data
    mlp[:, ::32] = 40 * mlp.abs().max()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sens = Q.sensitivity(model, passages, {"group_size": 32, "sym": True})
    assert len(sens) == 2 and sens[1] > sens[0] > -1e-6
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_int8_layers_really_run_at_8_bits(tiny, tmp_path, eager, one_thread):  # noqa: F811
    from transformers import AutoTokenizer

    from stages.methods.gptq import tokenized_calibration

    tok = AutoTokenizer.from_pretrained(tiny)
    calib = [c["input_ids"][0] for c in tokenized_calibration(tok, CALIB, 32)]
    dest = tmp_path / "mixed"
    Q.quantize(tiny, RTN | {"method": "gptq", "int8_layers": 1}, calib, [1], "cpu", dest)
    model = Q.load_quantized(dest, "cpu")
    bits = {n: m.bits for n, m in model.named_modules() if hasattr(m, "qweight")}
    assert {b for n, b in bits.items() if ".layers.1." in n} == {8}
    assert {b for n, b in bits.items() if ".layers.0." in n} == {4}
    cfg = json.loads((dest / "config.json").read_text())["quantization_config"]
    assert cfg["dynamic"] and cfg["sym"] is False and cfg["group_size"] == 32


def test_a_run_writes_paired_rows_and_a_frontier(tiny, tmp_path, eager, one_thread):  # noqa: F811
    evals = tmp_path / "eval.jsonl"
    evals.write_text("".join(json.dumps({"text": t, "id": f"e{i}"}) + "\n" for i, t in enumerate(TEXTS)))
    calib = tmp_path / "calib.jsonl"
    calib.write_text("".join(json.dumps({"text": t, "id": f"c{i}"}) + "\n" for i, t in enumerate(CALIB)))
    recipes = tmp_path / "recipes.yaml"
    recipes.write_text(yaml.safe_dump({"frontier": {
        "sensitivity": {"passages": 2, "group_size": 32, "sym": True},
        "recipes": {"rtn-g32": {"method": "rtn", "group_size": 32}, "int8": {"bits": 8, "group_size": 32,
                    "calib_size": 4, "calib_seq_len": 32}}}}))
    out = tmp_path / "frontier.json"
    F.main(["--model", "tiny", "--base", str(tiny), "--eval", str(evals), "--calib", str(calib),
            "--recipes", str(recipes), "--out", str(out), "--threads", "1", "--batch", "4",
            "--figure-dir", str(tmp_path / "png")])
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert set(rows) == {"base", "rtn-g32", "int8"}
    assert doc["num_examples"] == len(TEXTS) and len(rows["base"]["hits"]) == len(TEXTS)
    assert rows["base"]["acc"] > 0.5                 # the tiny model memorised TEXTS
    for name in ("rtn-g32", "int8"):
        r = rows[name]
        diff = [int(a) - int(b) for a, b in zip(r["hits"], rows["base"]["hits"])]
        assert r["delta_acc"] == pytest.approx(sum(diff) / len(diff))
        assert r["delta_acc_ci95"][0] <= r["delta_acc"] <= r["delta_acc_ci95"][1]
        assert r["size_mb"] < rows["base"]["size_mb"]
    assert rows["rtn-g32"]["size_mb"] < rows["int8"]["size_mb"]
    assert any(r["pareto"] for r in rows.values())
    assert len(doc["sensitivity"]["ranked"]) == 2


def test_disjointness_and_names_are_checked_before_work(tiny, tmp_path):  # noqa: F811
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"text": CALIB[0], "id": "e0"}) + "\n")
    calib = tmp_path / "calib.jsonl"
    calib.write_text(json.dumps({"text": CALIB[0], "id": "c0"}) + "\n")
    with pytest.raises(PipelineError, match="overlaps"):
        F.main(["--model", "tiny", "--base", str(tiny), "--eval", str(evals), "--calib", str(calib),
                "--out", str(tmp_path / "x.json")])
    with pytest.raises(PipelineError, match="unknown recipe"):
        F.main(["--model", "tiny", "--only", "g65", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_merge_joins_runs_of_one_machine_and_refuses_others(tmp_path):
    base = {"hits": "1010", "acc": 0.5, "size_mb": 10.0}
    recipes = {"a": {"bits": 4}, "b": {"bits": 8}}
    doc = {k: "x" for k in F.SAME} | {"num_examples": 4}

    def run(name, hits="1010"):
        return doc | {"rows": {"base": base | {"hits": hits},
                               name: {"recipe": recipes[name], "acc": 0.25, "size_mb": 3.0 if name == "a" else 5.0}}}

    merged = F.merge([run("a"), run("b")], recipes)
    assert set(merged["rows"]) == {"base", "a", "b"}
    assert merged["rows"]["a"]["pareto"] and not merged["rows"]["b"]["pareto"]   # bigger, no better
    with pytest.raises(PipelineError, match="base scores"):
        F.merge([run("a"), run("b", hits="1011")], recipes)
    with pytest.raises(PipelineError, match="dtype"):
        F.merge([run("a"), run("b") | {"dtype": "float32"}], recipes)
    with pytest.raises(PipelineError, match="row a was made with"):
        F.merge([run("a"), run("b")], recipes | {"a": {"bits": 4, "group_size": 32}})


def test_the_committed_frontier_matches_the_recipes_file():
    """Every committed row was made with the recipe the file now gives its name, on the same
    examples as the base, and its paired figures follow from its hits (edit a recipe: rerun it)."""
    from stages.schema.load import load_sections

    recipes = load_sections(Q.RECIPES, ("frontier",), {"frontier": Q.Frontier})["frontier"]["recipes"]
    for path in sorted((Path(__file__).parents[1] / "metrics" / "lm" / "int4_frontier").glob("*.json")):
        doc = json.loads(path.read_text())
        rows = doc["rows"]
        assert set(rows) - {"base"} <= set(recipes), path.name
        base = rows["base"]["hits"]
        assert len(base) == doc["num_examples"] and rows["base"]["acc"] == pytest.approx(base.count("1") / len(base))
        for name, r in rows.items():
            if name == "base":
                continue
            assert r["recipe"] == recipes[name], (path.name, name)
            assert r["acc"] == pytest.approx(r["hits"].count("1") / len(base))
            assert r["delta_acc"] == pytest.approx((r["hits"].count("1") - base.count("1")) / len(base))
            assert r["fraction_of_base"] == pytest.approx(r["acc"] / rows["base"]["acc"])


@pytest.mark.slow
def test_the_smollm2_base_already_sits_on_a_4_bit_grid_of_32_column_blocks(tmp_path):
    """Why asymmetric groups of 32 win the frontier (docs/language-models.md): the packaged base
    is a Q4_1 GGUF, dequantized, so every 32-column block of every decoder linear holds at most
    16 values, min + step * q with a float min; GPTQModel's integer zero point cannot place that
    grid, so rounding to its own asymmetric grid still moves the weights."""
    from stages.models import lm_source as L

    entry = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())["models"]["smollm2-135m"]
    model, _, _ = L.load(L.PackageSource(**entry["weights"]), "smollm2-135m")
    linears = [m.weight.detach() for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and ".layers." in n]
    assert len(linears) == 210
    offsets = []
    for w in linears:
        blocks = w.reshape(-1, 32).sort(-1).values
        assert int((1 + (blocks[:, 1:] != blocks[:, :-1]).sum(-1)).max()) <= 16
        b = blocks[:64]
        step = (b[:, -1] - b[:, 0]) / 15
        offsets.append((-b[:, 0] / step) % 1)
    frac = torch.cat(offsets)
    assert float(((frac > 0.05) & (frac < 0.95)).float().mean()) > 0.5    # mostly not an integer
    w = linears[0]
    assert float((Q.fake_int4(w, 32, sym=False) - w).abs().max()) > 0
