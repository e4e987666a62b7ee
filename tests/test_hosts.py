"""The host axis: benchmarks filed per machine name, one machine per name, every host side by
side in one report (stages/meters/host.py, stages/reporting/hosts.py)."""
import json
import shutil

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.entry import aggregate
from stages.meters import host as H
from stages.reporting import hosts
from tests.metric_fixtures import HOST, MACHINE, PARAMS, write_metrics

OTHER = {**MACHINE, "cpu": "Edge Board A76", "usable_cores": 4}


def second_host(metrics, name="edge-a76-4c", machine=OTHER, slower=3.0):
    """A copy of HOST's benchmarks as another machine would file them (`slower` times slower)."""
    for family in ("lm", "detector"):
        src, dst = metrics / family / "bench" / HOST, metrics / family / "bench" / name
        shutil.copytree(src, dst)
        for path in dst.rglob("*.json"):
            doc = json.loads(path.read_text())
            doc["machine"] = machine
            for key in ("decode_tokens_per_s",):
                doc[key] = doc[key] / slower if key in doc else None
            if "latency_ms_median" in doc:
                doc["latency_ms_median"] *= slower
            path.write_text(json.dumps({k: v for k, v in doc.items() if v is not None}))


def test_the_report_shows_every_host_side_by_side(tmp_path, monkeypatch):
    metrics = write_metrics(tmp_path / "metrics")
    second_host(metrics)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    monkeypatch.setattr("stages.reporting.export.write_png", lambda items, folder, browser: None)
    aggregate.main(["--metrics", str(metrics), "--summary", str(tmp_path / "summary.json"),
                    "--plots", str(tmp_path / "plots"), "--params", str(tmp_path / "params.yaml")])
    report = (tmp_path / "plots" / "report.md").read_text()
    section = report[report.index("## Speed per host"):]
    assert f"{HOST} (Test CPU 9000, 2 cores)" in section and "edge-a76-4c (Edge Board A76, 4 cores)" in section
    row = next(line for line in section.splitlines() if line.startswith("| smollm2-135m-ort-int4 |"))
    cells = [c.split(" · ")[0] for c in row.strip(" |").split(" | ")[1:]]
    assert cells == ["50.0 tok/s", "150.0 tok/s"]   # columns in host order: edge-a76-4c, test-host
    assert "| detector int8 | 57.6 ms | 19.2 ms |" in section
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["host"] == HOST and set(summary["hosts"]) == {HOST, "edge-a76-4c"}
    # the main tables stay on this run's host
    assert summary["lm"]["smollm2-135m-ort-int4"]["decode_tokens_per_s"] == 150.0


def test_one_host_shows_no_comparison(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    assert hosts.section(hosts.collect(metrics), ["smollm2-135m-pytorch"], ["int8"]) == []


def test_a_host_name_is_one_machine(tmp_path):
    metrics = write_metrics(tmp_path / "metrics")
    path = metrics / "lm" / "bench" / HOST / "smollm2-135m-pytorch.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "machine": OTHER}))
    with pytest.raises(PipelineError, match=f"host '{HOST}' holds timings of two machines") as exc:
        hosts.collect(metrics)
    assert "\n" not in str(exc.value)
    # the bench stages refuse before timing, naming a host for this machine
    with pytest.raises(PipelineError, match=r"this machine is Test CPU 9000 x2: give it its own name "
                                            r"\(dvc exp run -S host=test-9000-2c\)"):
        H.check(metrics / "lm" / "bench" / HOST, HOST, MACHINE)
    H.check(metrics / "detector" / "bench" / HOST, HOST, MACHINE)   # all from this machine: fine
    H.check(metrics / "lm" / "bench" / "new-host", "new-host", MACHINE)   # a new host: fine


def test_suggested_host_names():
    assert H.suggested({"cpu": "AMD EPYC", "usable_cores": 2}) == "amd-epyc-2c"
    assert H.suggested({"cpu": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "usable_cores": 8}) == \
        "intel-xeon-platinum-8481c-8c"
    assert H.suggested({"cpu": "Cortex-A76", "usable_cores": 4}) == "cortex-a76-4c"


def test_bad_host_names_are_refused():
    from stages.schema import params as P
    from pathlib import Path
    for bad in ("My Laptop", "../up", "", "-x"):
        with pytest.raises(PipelineError, match="host"):
            P.validate({**PARAMS, "host": bad}, Path("params.yaml"))
