"""A batch-1 Llama decoder built for the memory-bandwidth bound (the gpt-fast recipe): the
q/k/v projections fused into one matrix and gate/up into another, a static KV cache, and a
greedy step through fixed-address inputs (GreedyLoop) that the GPU stage compiles and captures
as one CUDA graph. Linears (stages/runtimes/int4_linear.py) are bfloat16 or 4-bit weight-only,
the LM head included when asked.

Why hand-written rather than transformers' model: its attention calls q, k and v as three
linears and its MLP gate and up as two, so a decode step launches more, smaller matrix
products, and its static-cache path builds masks per step. The weights and the rotary tables
are the transformers model's own (llama3 rope scaling included); tests/test_fused_llama.py
checks the logits against it.
"""
from __future__ import annotations

from stages.core.errors import PipelineError
from stages.models.llama_shapes import linear_shapes
from stages.runtimes.int4_linear import check_widths, linear


def matrices(cfg) -> dict[str, tuple[int, int]]:
    """(out, in) of every matrix the fused decoder multiplies by, per layer, and the LM head:
    the model's projections (llama_shapes.linear_shapes), q/k/v and gate/up stacked."""
    p = {name.split(".")[1]: (n, k) for name, (k, n) in linear_shapes(cfg).items()}
    fused = {"qkv": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gate_up": ("gate_proj", "up_proj"),
             "down": ("down_proj",)}
    out = {f: (sum(p[n][0] for n in names), p[names[0]][1]) for f, names in fused.items()}
    return out | {"head": (cfg.vocab_size, cfg.hidden_size)}


def check(cfg, weights: int, head: int, group_size: int, kernel: str) -> None:
    """One line, before any weight is built, where a width or an int4 kernel cannot run `cfg`."""
    check_widths(matrices(cfg), weights, head, group_size, kernel)


class FusedDecoder:
    """What the GPU stage calls on a fused engine (this file's and fused_opt.py's): `forward(ids,
    pos)` -> logits, and per layer a dict holding its static KV cache under "k" and "v"."""
    layers: list[dict]

    def next_token(self, ids, pos):
        """(last logits [1, vocab], greedy next token [1, 1]) of a step: what is compiled."""
        logits = self.forward(ids, pos)[:, -1]
        return logits, logits.argmax(-1, keepdim=True)

    def reset(self) -> None:
        for L in self.layers:
            L["k"].zero_()
            L["v"].zero_()


class FusedLlama(FusedDecoder):
    """Batch-1 decoding of a transformers LlamaForCausalLM (no biases): `weights` 16 or 4 for the
    decoder's linears, `head` 16 or 4 for the LM head. Holds its own static KV cache of
    `max_len` positions; `forward(ids [1, T], pos [T])` writes K/V at `pos`, returns logits."""

    def __init__(self, model, max_len: int, weights: int = 16, head: int = 16, group_size: int = 128,
                 kernel: str = "tinygemm"):
        import torch

        cfg = model.config
        if type(model).__name__ != "LlamaForCausalLM" or getattr(cfg, "attention_bias", False) \
                or getattr(cfg, "mlp_bias", False):
            raise PipelineError(f"the fused decoder runs Llama without biases, not "
                                f"{type(model).__name__}")
        check(cfg, weights, head, group_size, kernel)
        dt, dev = model.dtype, model.device
        self.nh, self.nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.d = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.nh
        self.eps = cfg.rms_norm_eps
        self.embed = model.get_input_embeddings().weight
        self.layers = []
        for layer in model.model.layers:
            a, m = layer.self_attn, layer.mlp
            self.layers.append(dict(
                ln1=layer.input_layernorm.weight, ln2=layer.post_attention_layernorm.weight,
                qkv=linear(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), weights, group_size, kernel),
                o=linear(a.o_proj.weight, weights, group_size, kernel),
                gate_up=linear(torch.cat([m.gate_proj.weight, m.up_proj.weight]), weights, group_size, kernel),
                down=linear(m.down_proj.weight, weights, group_size, kernel),
                k=torch.zeros(1, self.nkv, max_len, self.d, dtype=dt, device=dev),
                v=torch.zeros(1, self.nkv, max_len, self.d, dtype=dt, device=dev)))
        self.norm = model.model.norm.weight
        self.head = linear(model.get_output_embeddings().weight, head, group_size, kernel)
        self.tied = head == 16 and model.get_output_embeddings().weight is self.embed
        pos = torch.arange(max_len, device=dev)[None]
        cos, sin = model.model.rotary_emb(self.embed[:1][None], pos)   # the model's own tables
        self.cos, self.sin = cos[0], sin[0]
        self.causal = torch.ones(max_len, max_len, dtype=torch.bool, device=dev).tril()

    def rms(self, x, w):
        import torch

        h = x.float()
        return w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def rope(self, x, cos, sin):
        import torch

        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def forward(self, ids, pos):
        import torch
        import torch.nn.functional as F

        t = ids.shape[1]
        x = F.embedding(ids, self.embed)
        cos, sin = self.cos[pos][None, None], self.sin[pos][None, None]
        mask = self.causal[pos][None, None]
        for L in self.layers:
            q, k, v = L["qkv"](self.rms(x, L["ln1"])).split(
                [self.nh * self.d, self.nkv * self.d, self.nkv * self.d], -1)
            q = self.rope(q.view(1, t, self.nh, self.d).transpose(1, 2), cos, sin)
            k = self.rope(k.view(1, t, self.nkv, self.d).transpose(1, 2), cos, sin)
            L["k"].index_copy_(2, pos, k)
            L["v"].index_copy_(2, pos, v.view(1, t, self.nkv, self.d).transpose(1, 2))
            y = F.scaled_dot_product_attention(q, L["k"], L["v"], attn_mask=mask, enable_gqa=True)
            x = x + L["o"](y.transpose(1, 2).reshape(1, t, self.nh * self.d))
            gate, up = L["gate_up"](self.rms(x, L["ln2"])).chunk(2, -1)
            x = x + L["down"](F.silu(gate) * up)
        return self.head(self.rms(x, self.norm))

    def bytes_per_token(self) -> int:
        """Bytes a decode step reads: every linear, norm and the LM head (the input embedding
        is a row lookup, unless the head is that same matrix)."""
        lin = sum(L[n].nbytes() for L in self.layers for n in ("qkv", "o", "gate_up", "down"))
        norms = sum(w.numel() * w.element_size() for L in self.layers for w in (L["ln1"], L["ln2"]))
        return lin + norms + self.norm.numel() * self.norm.element_size() + self.head.nbytes()


class GreedyLoop:
    """Greedy decode through fixed-address token and position tensors: step() decodes one token
    and advances both in place, so a CUDA graph can capture it whole and replay it per token
    with no host work in between. `fn(ids, pos) -> (logits, next)`: FusedLlama.next_token or its
    compiled form."""

    def __init__(self, fn, prompt_len: int, device):
        import torch

        self.fn, self.prompt_len = fn, prompt_len
        self.tok = torch.zeros((1, 1), dtype=torch.long, device=device)
        self.pos = torch.full((1,), prompt_len, dtype=torch.long, device=device)

    def step(self):
        logits, nxt = self.fn(self.tok, self.pos)
        self.tok.copy_(nxt)
        self.pos.add_(1)
        return logits

    def rewind(self, first) -> None:
        """Back to the prompt's end, `first` the token after it (the K/V beyond are rewritten)."""
        self.tok.copy_(first)
        self.pos.fill_(self.prompt_len)
