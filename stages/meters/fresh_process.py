"""Run one timing function in a fresh (spawned) process, so that its peak RSS (ru_maxrss) is
that variant's own: no tokenizer, torch or other variant loaded beside it."""
from __future__ import annotations

import multiprocessing
import queue as queues
import traceback

from stages.core.errors import PipelineError, log
from stages.meters.memory import peak_rss_mb
from stages.schema.load import Tracked


def _child(fn, args: tuple, queue) -> None:
    try:
        out = {**fn(*args), "peak_rss_mb": peak_rss_mb()}
        # the param keys the child read, for the parent's Tracked (the dvc.yaml contract test)
        reads = set().union(*(a.reads() for a in args if isinstance(a, Tracked)))
        queue.put({**out, "params_read": sorted(reads)})
    except BaseException as exc:  # sent to the parent, which raises it as one line
        last = (str(exc).splitlines() or [""])[0]
        queue.put({"error": f"{type(exc).__name__}: {last}", "trace": traceback.format_exc()})


def run(fn, *args) -> dict:
    """fn(*args) (a module-level function returning a dict) in a spawned process, plus
    "peak_rss_mb" of that process. A Tracked params argument gets the keys the child read
    marked read, as if read here. A child that raises, or dies without an answer (killed,
    out of memory), raises PipelineError here instead of leaving the parent waiting."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    try:
        while True:
            try:
                out = queue.get(timeout=1.0)
                break
            except queues.Empty:
                if not proc.is_alive() and queue.empty():
                    raise PipelineError(f"{fn.__name__} died in its fresh process "
                                        f"(exit code {proc.exitcode}) without a result") from None
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
    for a in args:
        if isinstance(a, Tracked):
            a.mark_read(out.get("params_read", ()))
    out.pop("params_read", None)
    if "error" in out:
        log.debug("%s", out["trace"])   # the child's traceback, for --verbose runs
        raise PipelineError(f"{fn.__name__} failed in its fresh process: {out['error']}")
    return out
