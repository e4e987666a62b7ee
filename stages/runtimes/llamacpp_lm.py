"""Helpers of the llama.cpp plugin (stages/runtimes/lm/llamacpp.py, llama-cpp-python, a CPU build):
loading a GGUF, and reading its tensors, types, vocabulary and the bytes one decode step reads."""
from __future__ import annotations

from pathlib import Path

from stages.core.errors import PipelineError

VERSIONS = ("llama-cpp-python", "gguf")


def require():
    """llama_cpp, or a one-line error naming the package and the setup command."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise PipelineError(f"the llama.cpp runtime needs the pip package 'llama-cpp-python' "
                            f"({exc}); install it with `bash setup.sh` (builds it from its sdist)") from None
    return llama_cpp


def load(path: Path, threads: int, n_ctx: int, logits_all: bool):
    """A Llama over one GGUF, n_batch = n_ctx (one decode call per scored example)."""
    llama_cpp = require()
    if not Path(path).is_file():
        raise PipelineError(f"GGUF file not found: {path}")
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                           n_threads=threads, n_threads_batch=threads, logits_all=logits_all,
                           verbose=False, seed=0)


def tensors(path: Path) -> dict[str, tuple[str, int, int]]:
    """{tensor name: (ggml type, bytes, rows)} read from the GGUF header (gguf-py)."""
    from gguf import GGUFReader

    return {t.name: (t.tensor_type.name, int(t.n_bytes), int(t.shape[-1]) if len(t.shape) > 1 else 1)
            for t in GGUFReader(str(path)).tensors}


def weight_bytes_per_token(path: Path) -> int:
    """Bytes of the weights one decode step reads: every tensor, except that an embedding
    table with its own output.weight is read one row per token (a tied table, as SmolLM2's,
    is read whole, as the LM head)."""
    ts = tensors(path)
    total = sum(b for _, b, _ in ts.values())
    if "output.weight" in ts and "token_embd.weight" in ts:
        _, b, rows = ts["token_embd.weight"]
        total -= b - b // rows
    return total


def type_counts(path: Path) -> dict[str, int]:
    """How many tensors of each ggml type the file holds (e.g. {"Q4_0": 210, "F32": 61})."""
    out: dict[str, int] = {}
    for kind, _, _ in tensors(path).values():
        out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items()))


def vocab_size(path: Path) -> int:
    from gguf import GGUFReader

    return len(GGUFReader(str(path)).fields["tokenizer.ggml.tokens"].data)


