"""The figures, checked on their data: every figure the report shows is built (as the aggregate
stage builds it, without the PNG export) from the fixture metrics and from the committed ones,
and each obeys the rules a reader relies on: every variant is a point or a bar, every runtime
and method chain is in the legend, one n per accuracy axis, one host per speed axis, a log axis
where one value dwarfs the rest, and labels that do not cover one another."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.entry.aggregate import build_figures, collect
from stages.reporting import geometry, lm_figures
from tests.metric_fixtures import PARAMS, write_metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fixture_figures(tmp_path_factory):
    root = tmp_path_factory.mktemp("figs")
    write_metrics(root / "metrics")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    used, _, det, _, rows, _ = collect(root / "metrics", root / "params.yaml")
    return used, det, rows, {stem: fig for stem, _, fig in build_figures(used, det, rows)}


def points(fig) -> list[str]:
    """Every plotted data point's label text (the markers the legend entries stand for excluded)."""
    return [t for tr in fig.data if tr.type == "scatter" and tr.x and tr.x[0] is not None
            for t in (tr.text or [])]


def check_lm(fig, rows: dict, model: str, axis: str) -> None:
    mine = [r for r in rows.values() if r["model"] == model]
    data = [tr for tr in fig.data if tr.type == "scatter" and tr.mode == "markers+text"]
    assert sum(len(tr.x) for tr in data) == len(mine)                       # every variant a point
    legend = {tr.name for tr in fig.data if tr.showlegend is not False}
    assert {r["runtime"] for r in mine} | {r["chain"] for r in mine} <= legend   # complete legend
    title = fig.layout.title.text
    assert f"{mine[0]['num_examples']} examples per point" in title       # one n, stated
    if axis in lm_figures.TIMED:
        assert f"timed on {mine[0]['cpu']}" in title                      # one host, stated
    shown = " ".join(points(fig))
    assert all(r["weights"] in shown for r in mine)                        # each point says what it is


def check_detector(figs: dict, det: dict) -> None:
    for stem, fig in figs.items():
        if not stem.startswith("detector_"):
            continue
        if "tradeoff" in stem:
            names = {tr.name for tr in fig.data if tr.name != "Pareto front"}
        else:
            names = {tr.x[0] for tr in fig.data if tr.type == "bar"}
        assert names == set(det), stem                                     # every variant shown
    n = {r["num_images"] for r in det.values()}
    assert f"on {n.pop()} images" in figs["detector_accuracy"].layout.title.text
    latencies = [r["latency_ms_median"] for r in det.values()]
    if max(latencies) > 10 * min(latencies):                               # one variant dwarfs the rest
        assert figs["detector_speed"].layout.yaxis.type == "log"


def test_fixture_figures_obey_the_rules(fixture_figures):
    used, det, rows, figs = fixture_figures
    for model in {r["model"] for r in rows.values()}:
        for axis in lm_figures.AXES:
            check_lm(figs[f"lm_{model}_{axis}"], rows, model, axis)
    check_detector(figs, det)


def test_committed_figures_obey_the_rules():
    """The figures of the committed report, rebuilt from the committed metrics and params."""
    used, _, det, _, rows, _ = collect(ROOT / "metrics", ROOT / "params.yaml")
    figs = {stem: fig for stem, _, fig in build_figures(used, det, rows)}
    assert {p.stem for p in (ROOT / "plots" / "png").glob("*.png")} == set(figs)   # no stale PNG
    for model in {r["model"] for r in rows.values()}:
        for axis in lm_figures.AXES:
            check_lm(figs[f"lm_{model}_{axis}"], rows, model, axis)
    check_detector(figs, det)


def test_two_sample_sizes_or_two_hosts_on_one_axis_are_refused(fixture_figures):
    _, _, rows, _ = fixture_figures
    model = "smollm2-135m"
    mixed = copy.deepcopy(rows)
    next(r for r in mixed.values() if r["model"] == model)["num_examples"] += 1
    with pytest.raises(PipelineError, match="example counts"):
        lm_figures.tradeoff(mixed, model, "size_mb")
    mixed = copy.deepcopy(rows)
    next(r for r in mixed.values() if r["model"] == model)["cpu"] = "Another CPU"
    with pytest.raises(PipelineError, match="hosts"):
        lm_figures.tradeoff(mixed, model, "decode_tokens_per_s")
    lm_figures.tradeoff(mixed, model, "size_mb")   # size is not timed: the host does not matter


def box(p, pos, text, char_w=0.0075, h=0.04, m=0.012):
    (x, y), w = p, char_w * len(text)
    v, a = pos.split()
    x0 = {"right": x + m, "left": x - m - w, "center": x - w / 2}[a]
    y0 = {"middle": y - h / 2, "top": y + m, "bottom": y - m - h}[v]
    return x0, y0, x0 + w, y0 + h


def test_labels_of_a_crowded_cluster_do_not_overlap():
    pts = [(0.5, 0.5), (0.52, 0.5), (0.5, 0.53), (0.55, 0.48), (0.1, 0.9)]
    texts = ["gptq-int4", "rtn-int4", "base q4_k_m", "prune fp32", "base fp32"]
    boxes = [box(p, pos, t) for p, pos, t in zip(pts, geometry.place_labels(pts, texts), texts)]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] - 0.004 and b[0] < a[2] - 0.004 and a[1] < b[3] - 0.004 and b[1] < a[3] - 0.004)


def test_points_on_one_another_are_labelled_once():
    assert geometry.merge_colocated([(0.1, 0.1), (0.105, 0.1), (0.5, 0.5)], ["a", "b", "c"]) == ["a = b", "", "c"]


def sweep_row(chain: str, sparsity: float | None, acc: float, n: int = 200, runtime: str = "pytorch") -> dict:
    return {"model": "m", "runtime": runtime, "bits": 32, "chain": chain, "sparsity": sparsity, "acc": acc,
            "acc_ci95": (acc - 0.05, acc + 0.05), "num_examples": n, "variant": f"{chain} {sparsity}"}


def test_the_sparsity_sweep_is_a_line_per_method_from_the_base():
    rows = {"base": sweep_row("base", None, 0.52), "w50": sweep_row("wanda", 0.5, 0.31),
            "w20": sweep_row("wanda", 0.2, 0.50), "p50": sweep_row("prune", 0.5, 0.01),
            "p20": sweep_row("prune", 0.2, 0.45), "p24": sweep_row("prune", None, 0.005),   # 2:4: no point
            "ov": sweep_row("wanda", 0.2, 0.1, runtime="openvino")}                     # another runtime
    fig = lm_figures.sparsity_sweep(rows, "m")
    lines = {tr.name: tr for tr in fig.data}
    assert set(lines) == {"magnitude (prune)", "wanda"}
    assert list(lines["wanda"].x) == [0.0, 20.0, 50.0] and list(lines["wanda"].y) == pytest.approx([52, 50, 31])
    assert list(lines["magnitude (prune)"].y) == pytest.approx([52, 45, 1])
    assert "200 examples per point" in fig.layout.title.text
    assert lm_figures.sparsity_sweep({k: rows[k] for k in ("base", "w50", "p50")}, "m") is None   # one sparsity
    rows["w20"]["num_examples"] = 100
    with pytest.raises(PipelineError, match="example counts"):
        lm_figures.sparsity_sweep(rows, "m")


def test_a_pruning_label_says_its_sparsity_or_its_pattern():
    from stages.reporting import lm
    rec = {"model": "m", "runtime": "pytorch", "knobs": {}, "chain": [
        {"method": "wanda", "knobs": {"sparsity": 0.3, "pattern": "unstructured"}}]}
    assert lm.label(rec) == "wanda 30% · pytorch" and lm.sparsity(rec) == 0.3
    rec["chain"][0]["knobs"]["pattern"] = "2:4"
    assert lm.label(rec) == "wanda 2:4 · pytorch" and lm.sparsity(rec) is None
    rec["chain"] = [{"method": "prune", "knobs": {"sparsity": 0.5}}, {"method": "rtn", "knobs": {"bits": 4}}]
    assert lm.label(rec) == "prune 50%+rtn-int4 · pytorch" and lm.sparsity(rec) is None
