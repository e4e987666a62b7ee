"""GPTQ (Frantar et al., 2022) through transformers.GPTQConfig -> optimum -> GPTQModel
(stages/methods/gptq.py), at `bits` with `group_size` columns per scale, on `calib_size`
passages of `calib_seq_len` tokens."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from pydantic import Field

from stages.methods import gptq as G
from stages.methods.lm.base import LmMethod
from stages.runtimes.lm.base import Knobs


class GptqKnobs(Knobs):
    bits: Literal[2, 3, 4, 8] = 4
    group_size: int = Field(64, ge=-1)           # columns sharing one scale/zero; -1 = one group per row
    calib_size: int = Field(128, ge=1)           # calibration passages (never evaluated ones)
    calib_seq_len: int = Field(128, ge=8)        # tokens per passage (its first)
    damp_percent: float = Field(0.01, gt=0, lt=1)   # Hessian dampening, fraction of its mean diagonal
    desc_act: bool = False                       # columns in order of decreasing activation
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(1, ge=1)                # torch threads: fixed, since GPTQ's float32 sums (its bits) depend on it
    seed: int = 0                                # calibration draw and torch seed


class Gptq(LmMethod):
    name = "gptq"
    knobs = GptqKnobs
    needs_calibration = quantizes = True
    format = "gptq"

    def check(self, source: Path, knobs: dict) -> None:
        super().check(source, knobs)
        check_packable(source, self.name)

    def _apply(self, source: Path, out: Path, knobs: dict, calibration, teacher) -> dict:
        tok, calib = tokenized(source, calibration, knobs)
        seconds = G.quantize(source, tok, calib, knobs["bits"], knobs, knobs["seed"], out)
        return {"bits": knobs["bits"], "seconds": seconds, "calib_passages": len(calib)}


def check_packable(source: Path, method: str) -> None:
    """GPTQModel packs a layer's outputs in blocks of 32: a narrower or ragged projection is one
    line here, before any work, instead of a ValueError after the quantization pass."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from stages.core.errors import PipelineError

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source))
    bad = [n for n, m in model.model.layers.named_modules()
           if isinstance(m, torch.nn.Linear) and m.out_features % 32]
    if bad:
        raise PipelineError(f"{method}: GPTQModel packs output widths in multiples of 32; {bad[0]} of "
                            f"{source} has {model.model.layers.get_submodule(bad[0]).out_features}")


def tokenized(source: Path, calibration: list[str], knobs: dict):
    """(tokenizer, calibration examples): calib_size passages drawn with the seed, cut to their
    first calib_seq_len tokens (GPTQ's and AWQ's calibration alike)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    texts = sample(calibration, knobs["calib_size"], knobs["seed"])
    return tok, G.tokenized_calibration(tok, texts, knobs["calib_seq_len"])


def sample(texts: list[str], n: int, seed: int) -> list[str]:
    """n passages drawn (seeded, in file order) from the calibration set, or one line."""
    from stages.core.errors import PipelineError

    if n > len(texts):
        raise PipelineError(f"calib_size={n} exceeds the {len(texts)} calibration passages")
    return [texts[i] for i in sorted(random.Random(seed).sample(range(len(texts)), n))]


METHOD = Gptq()
