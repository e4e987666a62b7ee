"""A tiny Llama for the ONNX Runtime GenAI builder tests."""
from __future__ import annotations

from pathlib import Path


def tiny_llama(dest: Path, tok_dir: Path):
    """A seeded 2-layer Llama with SmolLM2's tied 49152-row table, saved with its tokenizer."""
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=128,
                                   tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(dest)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (dest / name).write_bytes((tok_dir / name).read_bytes())
    return model
