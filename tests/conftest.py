"""Shared fixtures. Tests that need ../shared/data skip cleanly when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


# Without an NVIDIA GPU, Triton kernels (stages/runtimes/int4_gemv.py) run in Triton's interpreter.
# Triton reads this when a kernel is defined, so it is set before any test imports one.
if not Path("/dev/nvidia0").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")

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

    import yaml

    from stages.models.lm_source import PackageSource, package_gguf

    folder = tmp_path_factory.mktemp("tiny-smollm2") / "hf"
    entry = yaml.safe_load((ROOT / "params.yaml").read_text())["models"]["smollm2-135m"]["weights"]
    gguf_file = package_gguf(PackageSource(**entry), folder.parent)
    tok = transformers.AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=256, tie_word_embeddings=True,
                                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    transformers.LlamaForCausalLM(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory, tiny_hf) -> Path:
    """A random 2-layer Qwen2 (a non-Llama architecture: biased q/k/v projections) in a local
    folder, with the same tokenizer as tiny_hf."""
    torch = pytest.importorskip("torch")
    import shutil

    import transformers

    folder = tmp_path_factory.mktemp("tiny-qwen2") / "hf"
    torch.manual_seed(1)
    cfg = transformers.Qwen2Config(vocab_size=49152, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=256, tie_word_embeddings=True,
                                   bos_token_id=1, eos_token_id=2)
    transformers.Qwen2ForCausalLM(cfg).eval().save_pretrained(folder)
    for f in tiny_hf.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy2(f, folder / f.name)
    return folder


@pytest.fixture(scope="session")
def tiny_gemma3(tmp_path_factory, tiny_hf) -> Path:
    """A random 6-layer Gemma 3 text model (the second real LM's architecture: five sliding-window
    layers then a global one, as Gemma 3 270M's pattern, which llama.cpp assumes; q/k norms; a
    scaled embedding) in a local folder."""
    torch = pytest.importorskip("torch")
    import shutil

    import transformers

    folder = tmp_path_factory.mktemp("tiny-gemma3") / "hf"
    torch.manual_seed(2)
    cfg = transformers.Gemma3TextConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
        query_pre_attn_scalar=16, sliding_window=8,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    transformers.Gemma3ForCausalLM(cfg).eval().save_pretrained(folder)
    for f in tiny_hf.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy2(f, folder / f.name)
    return folder


FIRST = ("test_pipeline_e2e.py",)   # the longest file starts first, so it is not the run's tail


def pytest_collection_modifyitems(config, items):
    """The longest test file first (pytest-xdist hands files to its workers in this order);
    `slow` tests (real weights, more inputs through `dvc repro`) run only when selected:
    python -m pytest -m slow."""
    items.sort(key=lambda item: item.path.name not in FIRST)   # stable: the rest keep their order
    if "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: run before a stop with `python -m pytest -m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
