"""Shared fixtures. Tests that need ../shared/data skip cleanly when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


PRISTINE_ENV = dict(os.environ)   # as pytest started


@pytest.fixture(autouse=True)
def _environment_restored():
    """After each test, os.environ is as pytest started (not as the test found it: a module
    fixture may already have changed it). A stage main() run in-process pins CPU numerics for
    its own process (stages/core/numerics.py: ONEDNN_MAX_CPU_ISA=AVX2, ...); leaked, the pins
    reached every later subprocess, and test_pipeline_e2e's `dvc repro` ran OpenVINO capped at
    AVX2 (CI, stop 18: int4 failed with "could not create a primitive descriptor")."""
    yield
    for key in set(os.environ) - set(PRISTINE_ENV) - {"PYTEST_CURRENT_TEST"}:   # pytest's own
        del os.environ[key]
    os.environ.update(PRISTINE_ENV)


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the calling test when it is missing."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not present: {p}")
    return p


@pytest.fixture
def coco_mini() -> Path:
    return shared_path("coco-val2017-mini")


@pytest.fixture
def coco_calib() -> Path:
    return shared_path("coco-val2017-calib", "images")


@pytest.fixture
def lambada_jsonl() -> Path:
    return shared_path("lambada", "lambada_test.jsonl")


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory) -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer (from the packaged GGUF: the converter
    only accepts BPE pre-tokenizers it knows)."""
    torch = pytest.importorskip("torch")
    import transformers

    from stages.models.smollm2 import package_gguf

    folder = tmp_path_factory.mktemp("tiny-smollm2") / "hf"
    gguf_file = package_gguf()
    tok = transformers.AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=256, tie_word_embeddings=True,
                                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    transformers.LlamaForCausalLM(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
