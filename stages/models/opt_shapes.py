"""Speed-only OPT shapes: the published architecture, random weights (accuracy n/a), for the
fused OPT decoder (stages/runtimes/fused_opt.py). As stages/models/llama_shapes.py for Llama."""
from __future__ import annotations

from stages.core.errors import PipelineError

# The config.json values of the public model cards (architecture keys only; no weights).
SHAPES = {
    "opt-350m": {  # https://huggingface.co/facebook/opt-350m/blob/main/config.json
        "hidden_size": 1024, "ffn_dim": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
        "vocab_size": 50272, "max_position_embeddings": 2048, "word_embed_proj_dim": 512,
        "do_layer_norm_before": False, "activation_function": "relu", "enable_bias": True,
        "pad_token_id": 1, "bos_token_id": 2, "eos_token_id": 2},
}


def config(shape: str):
    """A transformers OPTConfig of a published shape."""
    from transformers import OPTConfig

    if shape not in SHAPES:
        raise PipelineError(f"unknown OPT shape {shape!r}; known: {sorted(SHAPES)}")
    return OPTConfig(**SHAPES[shape])


def linear_shapes(cfg) -> dict[str, tuple[int, int]]:
    """Projection name -> (in_features, out_features) in every decoder layer."""
    h, f = cfg.hidden_size, cfg.ffn_dim
    return {"self_attn.q_proj": (h, h), "self_attn.k_proj": (h, h), "self_attn.v_proj": (h, h),
            "self_attn.out_proj": (h, h), "fc1": (h, f), "fc2": (f, h)}
