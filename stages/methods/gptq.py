"""GPTQ (Frantar et al., 2022) through transformers.GPTQConfig -> optimum -> GPTQModel.

auto-gptq is archived and breaks with transformers 5; GPTQModel is its maintained successor.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

BITS = (2, 3, 4, 8)  # widths GPTQ packs (transformers.GPTQConfig accepts exactly these)


def _group_size(n: int) -> int:
    if n == 0 or n < -1:
        raise ValueError("a group is -1 (one group per row) or a positive number of columns")
    return n


# The `group_size` knob of GPTQ, RTN and AWQ: columns sharing one scale/zero point.
GroupSize = Annotated[int, AfterValidator(_group_size)]


def tokenized_calibration(tok, texts: list[str], seq_len: int) -> list[dict]:
    """Pre-tokenized examples cut to their first seq_len tokens (optimum would not truncate
    a list of strings; a list of dicts is passed through as is). Cut by slicing: calling the
    tokenizer with truncation=True would leave truncation switched on in its state, and
    save_pretrained would write it into every GPTQ folder's tokenizer.json."""
    out = []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"][:seq_len]
        out.append({"input_ids": [ids], "attention_mask": [[1] * len(ids)]})
    return out


def quantize(base: Path, tok, calib: list[dict], bits: int, cfg: dict, seed: int, dest: Path) -> float:
    """Quantize at `bits`, save to dest, return the quantization time in seconds."""
    import torch
    from transformers import AutoModelForCausalLM, GPTQConfig

    torch.manual_seed(seed)
    gptq = GPTQConfig(
        bits=bits,
        group_size=cfg["group_size"],      # columns sharing one scale/zero point (-1: whole row)
        dataset=calib,                     # calib_size passages, calib_seq_len tokens each
        damp_percent=cfg["damp_percent"],  # Hessian dampening, fraction of its mean diagonal
        desc_act=cfg["desc_act"],          # act-order: columns by decreasing Hessian diagonal
        tokenizer=tok, model_seqlen=cfg["calib_seq_len"])
    dtype = torch.float16 if cfg["device"] == "cuda" else torch.float32
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(base, quantization_config=gptq,
                                                 device_map=cfg["device"], dtype=dtype)
    seconds = time.perf_counter() - t0
    qc = model.config.quantization_config  # do not write the calibration ids into config.json
    if isinstance(qc, dict):
        qc["dataset"] = None
    else:
        qc.dataset = None
    model.config.name_or_path = f"{Path(base).name}-gptq-int{bits}"  # no local paths saved
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    del model
    return seconds


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
    return tok, tokenized_calibration(tok, texts, knobs["calib_seq_len"])


def sample(texts: list[str], n: int, seed: int) -> list[str]:
    """n passages drawn (seeded, in file order) from the calibration set, or one line."""
    from stages.core.errors import PipelineError

    if n > len(texts):
        raise PipelineError(f"calib_size={n} exceeds the {len(texts)} calibration passages")
    return [texts[i] for i in sorted(random.Random(seed).sample(range(len(texts)), n))]
