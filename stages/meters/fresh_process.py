"""Run one timing function in a fresh (spawned) process, so that its peak RSS (ru_maxrss) is
that variant's own: no tokenizer, torch or other variant loaded beside it."""
from __future__ import annotations

import multiprocessing

from stages.meters.memory import peak_rss_mb


def _child(fn, args: tuple, queue) -> None:
    queue.put({**fn(*args), "peak_rss_mb": peak_rss_mb()})


def run(fn, *args) -> dict:
    """fn(*args) (a module-level function returning a dict) in a spawned process, plus
    "peak_rss_mb" of that process."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out
