"""llama.cpp runtime of the language model (llama-cpp-python, a CPU build): GGUF files made by
lm_build_gguf.

Scoring feeds the project's own token ids (the HF tokenizer's, as the PyTorch path does) to
Llama.eval with logits_all=True, one example per call in one batch, so every position's
logits come back for the harness-exact scoring. Speed runs Llama.generate, greedy, the path
an application of llama-cpp-python runs, with logits_all=False.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from stages.core.errors import PipelineError
from stages.meters import protocol
from stages.tasks import lambada as S

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


def n_ctx_for(reqs) -> int:
    """The smallest multiple of 64 that holds the longest scored example."""
    longest = max(len(ids) for ids, _, _ in reqs)
    return 64 * -(-longest // 64)


def score_all(llm, reqs, k: int) -> list[dict]:
    """Per-example harness-exact scores, batch 1 (no padding), in input order."""
    import torch

    scores = []
    for ids, n, cont in reqs:
        llm.reset()
        llm.eval(ids)
        logits = torch.from_numpy(llm.scores[len(ids) - n:len(ids)].copy())
        scores.append(S.score_continuation(logits, cont, k))
    return scores


def speeds(path: Path, ids: list[int], cfg: dict, meter=None) -> dict:
    """lm_speed's protocol: decode = exactly decode_tokens greedy new tokens after a 32-token
    prompt (batch 1, Llama.generate); prefill = one Llama.eval over prefill_tokens. Medians
    over speed_repeats after one warm-up; the KV cache is cleared before every run."""
    prompt, prefill, n = ids[:32], ids[:cfg["prefill_tokens"]], cfg["decode_tokens"]
    llm = load(path, cfg["threads"], max(512, len(prefill) + 1, len(prompt) + n + 1), logits_all=False)

    llama_cpp, own = require(), []   # own: llama.cpp's own eval timers of each decode run

    def decode_all() -> float:
        t0 = time.perf_counter()
        llm.reset()   # n_tokens 0: generate() reuses no cached prefix
        llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
        made = 0
        for _ in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
            made += 1
            if made == n:
                break
        seconds = time.perf_counter() - t0
        perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
        own.append((perf.t_p_eval_ms + perf.t_eval_ms) / 1000)
        return seconds

    def prefill_once() -> float:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prefill)
        return time.perf_counter() - t0

    out = protocol.measure(prefill_once, decode_all, len(prefill), n, cfg["speed_repeats"], meter)
    return {**out, "own_timer_decode_tokens_per_s": n / statistics.median(own[1:])}


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


def context_length(path: Path) -> int:
    """The trained context (`<arch>.context_length` in the GGUF header)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    arch = bytes(fields["general.architecture"].parts[-1]).decode()
    field = fields[f"{arch}.context_length"]
    return int(field.parts[field.data[0]][0])
