"""The language-model runtime interface (optimum-benchmark's backend idea): a runtime builds its
artifact from a Hugging Face folder and opens it as a Session. Scoring (stages/tasks) and timing
(stages/meters/lm_latency.py) drive every runtime through the Session alone, so no runtime times
or scores itself, and a runtime never sees a task.

Every artifact is a folder holding the runtime's files plus the source's config.json and
tokenizer files, so the tokenizer, the architecture and the context length are read the same way
for every runtime.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import json
import shutil
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from stages.core.errors import PipelineError, log

# The source files every artifact carries beside the runtime's own (those that exist).
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "tokenizer.model", "chat_template.jinja")


class Knobs(BaseModel):
    """A plugin's knobs: typed, with defaults, no unknown key (a typo is one line)."""
    model_config = ConfigDict(extra="forbid", frozen=True)


def validate_knobs(model: type[Knobs], given: dict, who: str) -> dict:
    """`given` over the plugin's defaults as a plain dict, or one line naming the bad knob."""
    try:
        return model.model_validate(given).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            near = difflib.get_close_matches(key, list(model.model_fields), 1, 0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise PipelineError(f"{who}: unknown knob {key!r}{hint}; known: "
                                f"{', '.join(model.model_fields)}") from None
        raise PipelineError(f"{who}: {key}: {err['msg']}, got {err.get('input')!r}") from None


class Session(ABC):
    """One opened artifact at batch 1. `logits` scores; `reset` + `step` generate with the
    runtime's own KV cache, as a deployment would."""

    @abstractmethod
    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits [len(ids), vocab] (float32) of every position, from an empty cache."""

    def tail_logits(self, ids: list[int], n: int) -> np.ndarray:
        """Logits [n, vocab] of the last n positions of `ids` from an empty cache (what scoring
        needs); a runtime may compute only those."""
        return self.logits(ids)[len(ids) - n:]

    def tail_logits_many(self, items: list[tuple[list[int], int]]) -> list[np.ndarray]:
        """tail_logits of several sequences, in order; a runtime may batch them (the same
        logits up to float rounding: each sequence is still scored from an empty cache)."""
        return [self.tail_logits(ids, n) for ids, n in items]

    @abstractmethod
    def reset(self, max_tokens: int = 512) -> None:
        """Empty the KV cache; at most `max_tokens` will be cached before the next reset."""

    @abstractmethod
    def step(self, ids: list[int]) -> np.ndarray:
        """Run `ids` after the cached tokens; the logits [vocab] of the last one."""


class LmRuntime(ABC):
    """A runtime. Subclasses set the class attributes and implement build / open /
    weight_bytes_per_token; `name` is the module name the registry looks it up by."""

    name: str = ""
    modules: tuple[str, ...] = ()        # importable modules it needs (checked before any work)
    packages: tuple[str, ...] = ()       # pip distributions whose versions every result records
    precisions: dict[str, int] = {}      # the `precision` knob's choices -> weight bits
    knobs: type[Knobs] = Knobs           # its knobs with their defaults (a params entry overrides them)
    architectures: frozenset[str] | None = None   # HF architectures it builds (None: any)
    unsupported: dict[str, str] = {}     # architecture -> why this runtime cannot build it (tested)
    quantized_sources: frozenset[str] = frozenset()   # quant_method of a source it can take

    def require(self) -> None:
        """Every module it needs importable, else one line naming the pip package."""
        for module in self.modules:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise PipelineError(f"the {self.name} runtime needs the Python module {module!r} "
                                    f"({exc}); install the project with `bash setup.sh`") from None

    def check(self, source: Path, knobs: dict) -> None:
        """One line, before any work, where this runtime cannot build `source` (knobs: validated)."""
        cfg = read_config(source)
        arch = (cfg.get("architectures") or ["?"])[0]
        if arch in self.unsupported:
            raise PipelineError(f"the {self.name} runtime does not support {arch} ({source}): "
                                f"{self.unsupported[arch]}")
        if self.architectures is not None and arch not in self.architectures:
            raise PipelineError(f"the {self.name} runtime does not support {arch} ({source}); "
                                f"supported: {', '.join(sorted(self.architectures))}")
        method = (cfg.get("quantization_config") or {}).get("quant_method")
        if method and method not in self.quantized_sources:
            raise PipelineError(f"the {self.name} runtime cannot build a {method}-quantized "
                                f"checkpoint ({source}); give it a float model")

    def validate(self, knobs: dict) -> dict:
        """Its knobs over its defaults, or one line naming the bad knob."""
        return validate_knobs(self.knobs, knobs, self.name)

    def versions(self) -> dict[str, str]:
        return {p: importlib.metadata.version(p) for p in self.packages}

    def build(self, source: Path, out: Path, knobs: dict) -> dict:
        """Write the artifact folder `out` (created) from the HF folder `source`; returns what
        the build made (tensor types, head type, ...) for the build's metrics."""
        knobs = validate_knobs(self.knobs, knobs, self.name)
        self.check(source, knobs)
        self.require()
        info = self._build(source, out, knobs)
        for name in MODEL_FILES:
            if (source / name).is_file() and not (out / name).exists():
                shutil.copy2(source / name, out / name)
        return info

    @abstractmethod
    def _build(self, source: Path, out: Path, knobs: dict) -> dict:
        """The runtime's own files into `out` (created here)."""

    def open(self, folder: Path, threads: int, knobs: dict | None = None,
             full_logits: bool = True) -> Session:
        """A Session over an artifact with `threads` intra-op threads and the variant's runtime
        knobs; full_logits=False where only `step` is used (timing). A missing, truncated or
        corrupt artifact is one line naming the folder and the loader's reason."""
        folder = Path(folder)
        if not folder.is_dir():
            raise PipelineError(f"no {self.name} model folder at {folder}")
        self.require()
        knobs = validate_knobs(self.knobs, knobs or {}, self.name)
        try:
            return self._open(folder, threads, knobs, full_logits)
        except PipelineError:
            raise
        except Exception as exc:   # the loaders raise anything from ValueError to RuntimeError
            log.debug("opening %s", folder, exc_info=True)   # the traceback, for --verbose runs
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            raise PipelineError(f"{folder} cannot be opened by the {self.name} runtime "
                                f"(truncated or corrupt?): {type(exc).__name__}: {reason}") from None

    @abstractmethod
    def _open(self, folder: Path, threads: int, knobs: dict, full_logits: bool) -> Session:
        """The runtime's own loader."""

    @abstractmethod
    def weight_bytes_per_token(self, folder: Path) -> int:
        """Bytes of weights one decode step reads (the bandwidth bound's numerator)."""


def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise PipelineError(f"no config.json in {folder}: not a Hugging Face model folder")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} is not valid JSON ({exc})") from None


def context_length(folder: Path) -> int:
    """The trained context of an artifact or HF folder (its config.json)."""
    cfg = read_config(folder)
    return int(cfg.get("max_position_embeddings") or cfg["text_config"]["max_position_embeddings"])


def tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)
