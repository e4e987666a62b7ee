"""Writing figures: self-contained HTML (plotly.js inline) and PNG through kaleido + Chromium."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from stages.core.errors import PipelineError

PNG = dict(format="png", width=960, height=520, scale=2)


def find_browser() -> str:
    """The Chromium kaleido will drive: $BROWSER_PATH, else chromium/chrome on PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise PipelineError(f"BROWSER_PATH={env!r} is not an executable file")
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    raise PipelineError("no Chromium found for PNG export (kaleido): install Debian's "
                        "'chromium' (see setup.sh) or set BROWSER_PATH to a Chrome/Chromium binary")


def write_html(items, folder: Path) -> None:
    """Self-contained pages: plotly.js inline, no CDN, render offline."""
    for stem, _, fig in items:
        fig.write_html(folder / f"{stem}.html", include_plotlyjs=True, include_mathjax=False,
                       full_html=True, config={"displaylogo": False})


def write_png(items, folder: Path, browser: str) -> None:
    """All PNGs in one kaleido/Chromium session (startup is most of the cost)."""
    import kaleido

    for name in ("kaleido", "choreographer", "logistro"):  # their INFO lines drown the stage's
        logging.getLogger(name).setLevel(logging.WARNING)
    specs = [dict(fig=fig.to_dict(), path=folder / f"{stem}.png",
                  opts=PNG | {k: v for k in ("width", "height") if (v := fig.layout[k])})
             for stem, _, fig in items]   # a figure that sets its size (panels of bars) keeps it
    try:
        kaleido.write_fig_from_object_sync(specs, kopts=dict(path=browser, mathjax=False))
    except Exception as exc:  # kaleido/choreographer raise many types; name the browser
        raise PipelineError(f"PNG export failed with browser {browser}: "
                            f"{type(exc).__name__}: {exc}") from None
    missing = [s["path"].name for s in specs if not s["path"].is_file()]
    if missing:
        raise PipelineError(f"kaleido wrote no PNG for {missing}")
