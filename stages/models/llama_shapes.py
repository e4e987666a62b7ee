"""Speed-only language models: the published architecture of a model, random weights.

As optimum-benchmark's `no_weights`: a model's speed and memory depend on its shapes, not on
its weight values, so no weights are downloaded. Accuracy is meaningless for these models and
is recorded as null (n/a), never 0. The quantized variants are GPTQ-format checkpoints
(qweight/qzeros/scales/g_idx, symmetric, desc_act off) filled with random codes: the kernels
read exactly the bytes a calibrated checkpoint of that shape has, but no calibration is run
(on random weights it would mean nothing).
"""
from __future__ import annotations

import json
from pathlib import Path

from stages.core.errors import PipelineError

# The config.json values of the public model cards (architecture keys only; no weights).
SHAPES = {
    "llama-3.2-3b": {  # https://huggingface.co/meta-llama/Llama-3.2-3B/blob/main/config.json
        "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
        "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128,
        "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "tie_word_embeddings": True, "hidden_act": "silu",
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
    "tinyllama-1.1b": {  # https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0/blob/main/config.json
        "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
        "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "hidden_act": "silu"},
    "smollm2-135m": {  # https://huggingface.co/HuggingFaceTB/SmolLM2-135M/blob/main/config.json
        # (the packaged GGUF's llama.* metadata has the same values): the pipeline's own LM,
        # for speed rows at any kernel and width without deriving and quantizing it on the GPU
        "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
        "tie_word_embeddings": True, "hidden_act": "silu"},
}
PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def check(shape: str) -> None:
    if shape not in SHAPES:
        raise PipelineError(f"unknown model shape {shape!r}; known: {sorted(SHAPES)}")


def config(shape: str):
    """A transformers LlamaConfig of a published shape."""
    from transformers import LlamaConfig

    check(shape)
    return LlamaConfig(**SHAPES[shape])


def linear_shapes(cfg) -> dict[str, tuple[int, int]]:
    """Projection name -> (in_features, out_features) in every decoder layer."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    d = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * d, cfg.num_key_value_heads * d
    return {"self_attn.q_proj": (h, q), "self_attn.k_proj": (h, kv), "self_attn.v_proj": (h, kv),
            "self_attn.o_proj": (q, h), "mlp.gate_proj": (h, i), "mlp.up_proj": (h, i),
            "mlp.down_proj": (i, h)}


def weight_bytes(cfg, bits: int, group_size: int) -> int:
    """Bytes of every weight one decode step reads: the projections (packed codes plus fp16
    scales and packed zeros per group at `bits` < 16), the fp16 LM head, the norms. The input
    embedding is a row lookup (one row per token), so it is not counted, unless it is the
    tied LM head, which is read whole."""
    layers = 0
    for k, n in linear_shapes(cfg).values():
        layers += k * n * 2 if bits >= 16 else k * n * bits // 8 + (k // group_size) * n * (2 + bits / 8)
    head = cfg.vocab_size * cfg.hidden_size * 2
    norms = (2 * cfg.num_hidden_layers + 1) * cfg.hidden_size * 2
    return int(cfg.num_hidden_layers * layers + head + norms)


def write_gptq(cfg, bits: int, group_size: int, dest: Path, device: str = "cpu", seed: int = 0) -> Path:
    """A GPTQ-format folder of random codes in shape `cfg` (fp16 embeddings, norms, head)."""
    import torch
    from safetensors.torch import save_file

    if bits not in (2, 3, 4, 8) or group_size <= 0 or cfg.hidden_size % group_size:
        raise PipelineError(f"GPTQ shape needs bits in 2/3/4/8 and a group size dividing "
                            f"{cfg.hidden_size}, got bits={bits} group_size={group_size}")
    g = torch.Generator(device).manual_seed(seed)
    per = 32 // bits
    tensors = {"model.embed_tokens.weight": _normal((cfg.vocab_size, cfg.hidden_size), g, device),
               "model.norm.weight": torch.ones(cfg.hidden_size, dtype=torch.float16, device=device)}
    if not cfg.tie_word_embeddings:
        tensors["lm_head.weight"] = _normal((cfg.vocab_size, cfg.hidden_size), g, device)
    for layer in range(cfg.num_hidden_layers):
        p = f"model.layers.{layer}."
        for norm in ("input_layernorm", "post_attention_layernorm"):
            tensors[p + norm + ".weight"] = torch.ones(cfg.hidden_size, dtype=torch.float16, device=device)
        for name, (k, n) in linear_shapes(cfg).items():
            q = p + name + "."
            # codes 1 .. 2^bits - 1: symmetric about the midpoint zero 2^(bits-1), so the weights
            # have mean 0 (the full range's half-step offset made 2-bit activations overflow)
            codes = torch.randint(1, 2 ** bits, (k // per, per, n), generator=g, device=device)
            packed = sum((codes[:, j].to(torch.int64) << (bits * j)) for j in range(per))
            tensors[q + "qweight"] = (packed - (packed >= 2**31) * 2**32).to(torch.int32)
            # symmetric grid: every zero point is the midpoint 2^(bits-1) (stored minus 1, GPTQ v1)
            zero = sum((2 ** (bits - 1) - 1) << (bits * j) for j in range(per))
            zero = zero - 2**32 if zero >= 2**31 else zero
            tensors[q + "qzeros"] = torch.full((k // group_size, n // per), zero, dtype=torch.int32, device=device)
            # integers uniform on -m..m (m = 2^(bits-1) - 1) have variance m(m+1)/3: this scale
            # gives the fp16 init's 0.02 std (a 0.035 std overflowed float16 in the 28-layer 3B
            # shape: NaN logits on 2026-12-03)
            m = 2 ** (bits - 1) - 1
            tensors[q + "scales"] = torch.full((k // group_size, n), 0.02 / (m * (m + 1) / 3) ** 0.5,
                                               dtype=torch.float16, device=device)
            tensors[q + "g_idx"] = torch.arange(k, dtype=torch.int32, device=device) // group_size
    dest.mkdir(parents=True, exist_ok=True)
    save_file({k: v.cpu().contiguous() for k, v in tensors.items()}, dest / "model.safetensors")
    doc = cfg.to_dict()
    doc.update(architectures=["LlamaForCausalLM"], torch_dtype="float16", quantization_config={
        "quant_method": "gptq", "bits": bits, "group_size": group_size, "sym": True,
        "desc_act": False, "checkpoint_format": "gptq", "pack_dtype": "int32"})
    (dest / "config.json").write_text(json.dumps(doc, indent=1))
    return dest


def _normal(shape, g, device):
    import torch
    return (torch.randn(shape, generator=g, device=device) * 0.02).to(torch.float16)
