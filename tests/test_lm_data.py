"""lambada_data: offline construction, local/official sources, calibration disjointness."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from stages import lambada_data as L, lambada_offline
from stages.common import PipelineError, download
from tests.conftest import ROOT
from tests.http_server import serve

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def write_params(tmp_path: Path, **lambada) -> Path:
    params = json.loads(json.dumps(PARAMS))
    params["lambada"].update(lambada)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return p


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("offline")
    L.main(["--out", str(tmp / "lambada"), "--params", str(write_params(tmp, source="offline"))])
    return tmp / "lambada"


def test_offline_examples_are_lambada_style(offline):
    evals = read_jsonl(offline / "eval.jsonl")
    assert len(evals) > 1000
    for rec in evals:
        context, target = rec["text"].rsplit(" ", 1)
        assert lambada_offline.is_target_word(target, PARAMS["lambada"]["min_target_len"])
        assert re.search(rf"\b{target}\b", context, re.IGNORECASE)  # occurs earlier
        n = len(rec["text"].split())
        assert PARAMS["lambada"]["min_words"] <= n <= PARAMS["lambada"]["max_words"]
    assert len({r["text"] for r in evals}) == len(evals)


def test_offline_is_deterministic(offline, tmp_path):
    L.main(["--out", str(tmp_path / "again"), "--params", str(write_params(tmp_path, source="offline"))])
    for name in ("eval.jsonl", "calib.jsonl"):
        assert (tmp_path / "again" / name).read_bytes() == (offline / name).read_bytes()


def test_calibration_is_disjoint_from_evaluation(offline):
    evals, calib = read_jsonl(offline / "eval.jsonl"), read_jsonl(offline / "calib.jsonl")
    assert len(calib) >= PARAMS["quant"]["calib_size"]
    assert not {r["id"] for r in evals} & {r["id"] for r in calib}
    L.check_disjoint(calib, evals)  # no shared 13-word window with any evaluated passage
    eval_text = "\n".join(r["text"] for r in evals)
    assert not any(c["text"] in eval_text or any(e["text"] in c["text"] for e in evals[:200])
                   for c in calib)


def test_calibrating_on_evaluation_examples_is_caught(offline):
    """Regression: the original project calibrated on the first 100 evaluation examples."""
    evals = read_jsonl(offline / "eval.jsonl")
    with pytest.raises(PipelineError, match="overlaps"):
        L.check_disjoint(evals[:100], evals)
    calib = read_jsonl(offline / "calib.jsonl")
    assert not {c["text"] for c in calib} & {e["text"] for e in evals[:100]}


def test_near_duplicate_articles_are_dropped_from_calibration():
    evals = [{"text": "one two three four five six seven eight nine ten eleven twelve thirteen fourteen",
              "id": "e"}]
    calib = [{"text": "Intro. one two three four five six seven eight nine ten eleven twelve thirteen",
              "id": "dup"}, {"text": "something else entirely", "id": "ok"}]
    assert L.overlapping(calib, evals) == {"dup"}


def test_local_source_with_shared_lambada(lambada_jsonl, tmp_path):
    L.main(["--out", str(tmp_path / "out"),
            "--params", str(write_params(tmp_path, source="local", local_path=str(lambada_jsonl)))])
    evals = read_jsonl(tmp_path / "out" / "eval.jsonl")
    assert len(evals) == 5153
    L.check_disjoint(read_jsonl(tmp_path / "out" / "calib.jsonl"), evals)


@pytest.mark.parametrize("content, match", [
    (None, "not found"),
    ('{"text": "a fine line"}\n{"text": "broken\n', "corrupt JSON"),
    ('{"text": "a fine line"}\n{"passage": "no text key"}\n', 'missing "text"'),
])
def test_local_source_errors(tmp_path, content, match):
    path = tmp_path / "lambada.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PipelineError, match=match):
        L.main(["--out", str(tmp_path / "out"),
                "--params", str(write_params(tmp_path, source="local", local_path=str(path)))])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key, value", [("source", "wikipedia"), ("calib_articles", 0),
                                        ("min_words", 200)])
def test_bad_lambada_params(tmp_path, key, value):
    with pytest.raises(PipelineError, match=f"lambada.{key}|unknown lambada.source"):
        L.main(["--out", str(tmp_path / "o"), "--params", str(write_params(tmp_path, **{key: value}))])


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    lines = [json.dumps({"text": f"passage {i} says the word word{i % 7} and ends with word{i % 7}"})
             for i in range(50)]
    (root / "lambada_test.jsonl").write_text("\n".join(lines) + "\n")
    url, httpd, _ = serve(root)
    yield f"{url}/lambada_test.jsonl", root / "lambada_test.jsonl"
    httpd.shutdown()


def test_official_source_downloads_and_verifies(server, tmp_path, monkeypatch):
    url, src = server
    monkeypatch.setattr(L, "OFFICIAL_URL", url)
    monkeypatch.setattr(L, "OFFICIAL_SHA256", hashlib.sha256(src.read_bytes()).hexdigest())
    L.main(["--out", str(tmp_path / "out"), "--downloads", str(tmp_path / "dl"),
            "--params", str(write_params(tmp_path, source="official"))])
    assert len(read_jsonl(tmp_path / "out" / "eval.jsonl")) == 50


def test_official_checksum_mismatch(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setattr(L, "OFFICIAL_URL", url)
    with pytest.raises(PipelineError, match="checksum mismatch"):
        L.main(["--out", str(tmp_path / "out"), "--downloads", str(tmp_path / "dl"),
                "--params", str(write_params(tmp_path, source="official"))])
    assert not list((tmp_path / "dl").iterdir()) and not (tmp_path / "out").exists()


def test_download_resumes_a_partial_file(server, tmp_path):
    url, src = server
    data = src.read_bytes()
    dest = tmp_path / "dl" / "lambada_test.jsonl"
    dest.parent.mkdir()
    (dest.parent / "lambada_test.jsonl.part").write_bytes(data[:1000])
    download(url, dest, hashlib.sha256(data).hexdigest())
    assert dest.read_bytes() == data
