"""A language model's base: its params entry (`models.<name>`) resolved to a plain Hugging Face
folder (float32 safetensors, config.json, tokenizer; stages/models/lm_source.py) with its
record.json. The architecture the entry declares must be the one the weights load as."""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import PipelineError, log, run_main, timed
from stages.core.files import atomic_path, dir_size_mb, write_json
from stages.models import lm_record, lm_source
from stages.schema.lm_tables import ModelEntry
from stages.schema.load import load_sections

PARAMS = ("models.${key}",)   # its own entry only


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--metrics", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    entry = load_sections(args.params, (f"models.{args.model}",),
                          {"models": dict[str, ModelEntry]})["models"][args.model]
    src = ModelEntry.model_validate(entry.plain()).weights
    with timed(f"loading {args.model} ({src.source})"):
        model, tok, record = lm_source.load(src, args.model)
    if record["architecture"] != entry["architecture"]:
        raise PipelineError(f"models.{args.model}.architecture is {entry['architecture']}, but the "
                            f"weights load as {record['architecture']}")
    record = {**record, "chain": []}
    with timed(f"saving {args.out}"), atomic_path(args.out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        lm_record.write(tmp, record)
    size = dir_size_mb(args.out)
    log.info("%s: %.1f MB on disk", args.model, size)
    write_json(args.metrics, {"record": record, "size_mb": round(size, 2),
                              "params": int(sum(p.numel() for p in model.parameters()))})


if __name__ == "__main__":
    run_main(main)
