"""Rewrite the README's results block from the committed metrics/summary.json and params.yaml
(not a DVC stage: run it after `dvc repro`, before committing the results)."""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import run_main
from stages.core.files import read_json
from stages.reporting.readme import render, replace_block
from stages.schema import params as P


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--readme", default="README.md", type=Path)
    ap.add_argument("--summary", default="metrics/summary.json")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    k = P.load(args.params, ("eval_lm.k",))["eval_lm"]["k"]
    block = render(read_json(args.summary, "summary"), k)
    args.readme.write_text(replace_block(args.readme.read_text(), block))


if __name__ == "__main__":
    run_main(main)
