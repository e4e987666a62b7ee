"""User-facing errors, stage logging and the `main()` wrapper every entry point uses.

Nothing here imports TensorFlow or torch, so every stage can validate its inputs before
any heavy library loads.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Iterator

log = logging.getLogger("pipeline")


class PipelineError(Exception):
    """A user-facing error: bad params, missing or corrupt input. Printed without a traceback."""


def setup_logging() -> None:
    """Short stage logs on stderr."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def run_main(main, argv: list[str] | None = None) -> None:
    """Run a stage's main(); turn PipelineError into one line `error: ...` and exit code 2."""
    setup_logging()
    try:
        main(argv)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """Log what a stage is doing and how long it took."""
    log.info("%s ...", what)
    t0 = time.perf_counter()
    yield
    log.info("%s done in %.1f s", what, time.perf_counter() - t0)
