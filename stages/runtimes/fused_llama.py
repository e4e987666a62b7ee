"""A batch-1 Llama decoder built for the memory-bandwidth bound (the gpt-fast recipe): the
q/k/v projections fused into one matrix and gate/up into another, a static KV cache, and one
decode step that torch.compile turns into a single CUDA graph ("reduce-overhead"). Linears are
bfloat16, or 4-bit weight-only through torch's own int4 kernel (tinygemm,
`aten._weight_int4pack_mm`, the kernel torchao's int4 weight-only uses) or dequantized by tensor
ops that torch.compile fuses into the matrix-vector product, the LM head included when asked.

Why hand-written rather than transformers' model: its attention calls q, k and v as three
linears and its MLP gate and up as two, so a decode step launches more, smaller matrix
products, and its static-cache path builds masks per step. The weights and the rotary tables
are the transformers model's own (llama3 rope scaling included); tests/test_fused_llama.py
checks the logits against it.
"""
from __future__ import annotations

from stages.core.errors import PipelineError


def int4_pack(weight, group_size: int, inner_k_tiles: int = 8):
    """(packed weight, scales_and_zeros) of `weight` [out, in] quantized asymmetrically to 4
    bits per group of `group_size` input columns, in tinygemm's layout: it dequantizes
    (q - 8) * scale + zero, zero = min + 8 * scale (torchao's float zero-point domain)."""
    import torch

    n, k = weight.shape
    if k % group_size or k % (16 * inner_k_tiles) or n % 8:
        raise PipelineError(f"int4: a {n}x{k} matrix needs in % {max(group_size, 16 * inner_k_tiles)} "
                            "== 0 and out % 8 == 0 (torch's int4 kernel)")
    g = weight.float().reshape(n, k // group_size, group_size)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    scale = (hi - lo).clamp(min=1e-6) / 15
    q = ((g - lo) / scale).round().clamp(0, 15).to(torch.int32).reshape(n, k)
    zero = lo + 8 * scale
    sz = torch.cat([scale, zero], -1).reshape(n, k // group_size, 2).transpose(0, 1)
    sz = sz.contiguous().to(torch.bfloat16)
    if weight.device.type == "cuda":
        packed = torch.ops.aten._convert_weight_to_int4pack(
            (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8), inner_k_tiles)
    else:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, inner_k_tiles)
    return packed, sz


def int4_dequant(weight, group_size: int):
    """The float weight int4_pack's codes stand for (for tests and error checks)."""
    n, k = weight.shape
    g = weight.float().reshape(n, k // group_size, group_size)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    scale = (hi - lo).clamp(min=1e-6) / 15
    return (((g - lo) / scale).round().clamp(0, 15) * scale + lo).reshape(n, k)


class Int4Linear:
    """y = x W^T with W from int4_pack, in bfloat16 (CUDA sm80+, or torch's CPU twin)."""

    def __init__(self, weight, group_size: int):
        self.packed, self.sz = int4_pack(weight, group_size)
        self.group_size, self.out = group_size, weight.shape[0]

    def __call__(self, x):
        import torch

        mm = torch.ops.aten._weight_int4pack_mm if x.device.type == "cuda" \
            else torch.ops.aten._weight_int4pack_mm_for_cpu
        y = mm(x.reshape(-1, x.shape[-1]), self.packed, self.group_size, self.sz)
        return y.reshape(*x.shape[:-1], self.out)

    def tensors(self) -> list:
        return [self.packed, self.sz]

    def nbytes(self) -> int:
        return self.packed.numel() * self.packed.element_size() + self.sz.numel() * self.sz.element_size()


class Int4Dequant:
    """The same 4-bit codes (two a byte), scales and minimums, dequantized inside the step by
    plain tensor ops: under torch.compile the unpacking fuses into the one-row matrix-vector
    reduction, which then reads the packed bytes once (no int4 kernel needed)."""

    def __init__(self, weight, group_size: int):
        import torch

        n, k = weight.shape
        g = weight.float().reshape(n, k // group_size, group_size)
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = (hi - lo).clamp(min=1e-6) / 15
        q = ((g - lo) / scale).round().clamp(0, 15).to(torch.uint8).reshape(n, k)
        self.packed = q[:, ::2] | (q[:, 1::2] << 4)
        self.scale, self.lo = scale.to(torch.bfloat16), lo.to(torch.bfloat16)
        self.shape, self.group_size = (n, k), group_size

    def __call__(self, x):
        import torch
        import torch.nn.functional as F

        n, k = self.shape
        q = torch.stack([self.packed & 15, self.packed >> 4], -1).reshape(n, k // self.group_size, self.group_size)
        w = (q.to(x.dtype) * self.scale.to(x.dtype) + self.lo.to(x.dtype)).reshape(n, k)
        return F.linear(x, w)

    def tensors(self) -> list:
        return [self.packed, self.scale, self.lo]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())


class DenseLinear:
    def __init__(self, weight):
        self.w = weight

    def __call__(self, x):
        import torch.nn.functional as F
        return F.linear(x, self.w)

    def tensors(self) -> list:
        return [self.w]

    def nbytes(self) -> int:
        return self.w.numel() * self.w.element_size()


INT4 = {"tinygemm": Int4Linear, "inductor": Int4Dequant}   # int4 kernel -> linear


def linear(weight, bits: int, group_size: int, kernel: str = "tinygemm"):
    return DenseLinear(weight) if bits == 16 else INT4[kernel](weight, group_size)


class FusedLlama:
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
        if weights not in (16, 4) or head not in (16, 4) or kernel not in INT4:
            raise PipelineError(f"weights and head are 16 or 4 bits (not {weights} / {head}), "
                                f"the int4 kernel one of {sorted(INT4)} (not {kernel!r})")
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

    def next_token(self, ids, pos):
        """(last logits [1, vocab], greedy next token [1, 1]) of a step: what is compiled."""
        logits = self.forward(ids, pos)[:, -1]
        return logits, logits.argmax(-1, keepdim=True)

    def tensors(self) -> list:
        """Every tensor a step reads or writes (a CUDA graph must find them at fixed addresses)."""
        out = [self.embed, self.norm, self.cos, self.sin, self.causal]
        for L in self.layers:
            out += [L["ln1"], L["ln2"], L["k"], L["v"]]
            out += [t for n in ("qkv", "o", "gate_up", "down") for t in L[n].tensors()]
        return out + self.head.tensors()

    def reset(self) -> None:
        for L in self.layers:
            L["k"].zero_()
            L["v"].zero_()

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
