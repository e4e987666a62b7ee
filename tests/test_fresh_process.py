"""stages/meters/fresh_process.py: a variant timed in a spawned process returns its result
and its own peak RSS; a child that raises or dies gives a one-line error, never a hang."""
from __future__ import annotations

import os

import pytest

from stages.core.errors import PipelineError
from stages.meters import fresh_process
from stages.schema.params import Tracked


def _grow(mb: int) -> dict:
    block = bytearray(mb * 1_000_000)   # touched: counted in the child's RSS
    block[::4096] = b"x" * len(block[::4096])
    return {"n": len(block)}


def _raise() -> dict:
    raise ValueError("bad model file\nsecond line")


def _die() -> dict:
    os._exit(3)


def test_the_child_returns_its_result_and_its_own_peak_rss():
    small, big = fresh_process.run(_grow, 1), fresh_process.run(_grow, 200)
    assert big["n"] == 200_000_000
    assert big["peak_rss_mb"] - small["peak_rss_mb"] > 150   # the allocation is the child's own


def test_a_raising_child_is_one_line_error():
    with pytest.raises(PipelineError, match=r"^_raise failed in its fresh process: ValueError: bad model file$"):
        fresh_process.run(_raise)


def test_a_dead_child_is_an_error_not_a_hang():
    with pytest.raises(PipelineError, match="exit code 3"):
        fresh_process.run(_die)


def _read_some(cfg: dict) -> dict:
    return {"device": cfg["device"], "eight": cfg["backend"][8]}


def test_the_keys_a_child_reads_count_as_read_in_the_parent_and_no_others():
    seen: set = set()
    cfg = Tracked({"device": "cpu", "threads": 2, "backend": {8: "torch", 4: "marlin"}}, "bench_lm.", seen)
    out = fresh_process.run(_read_some, cfg)
    assert out["device"] == "cpu" and out["eight"] == "torch"   # int keys survive the pickle
    assert "params_read" not in out
    assert seen == {"bench_lm.device", "bench_lm.backend", "bench_lm.backend.8"}
