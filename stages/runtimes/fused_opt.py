"""A batch-1 OPT decoder for the memory-bandwidth bound, as stages/runtimes/fused_llama.py is
for Llama: q/k/v fused into one matrix (their biases into one vector), a static KV cache, the
same linears (bfloat16 or 4-bit weight-only, the LM head included when asked) and the same
interface (fused_llama.FusedDecoder, and bytes_per_token), so stages/entry/gpu_decode.py
compiles and captures its step the same way.

OPT differs from Llama where this file does: learned positions (offset by 2), LayerNorm with
biases, ReLU, biases on every projection, the word embedding narrower than the hidden state
(project_in / project_out), and in OPT-350m the norms after each residual add instead of before
(`do_layer_norm_before`). The weights are the transformers model's own;
tests/test_fused_opt.py checks the logits against it.
"""
from __future__ import annotations

from stages.core.errors import PipelineError
from stages.models.opt_shapes import linear_shapes
from stages.runtimes.fused_llama import FusedDecoder
from stages.runtimes.int4_linear import DenseLinear, check_widths, linear


def matrices(cfg) -> dict[str, tuple[int, int]]:
    """(out, in) of every matrix the decoder multiplies by, per layer, and the LM head."""
    p = {name.split(".")[-1]: (n, k) for name, (k, n) in linear_shapes(cfg).items()}
    qkv = (sum(p[n][0] for n in ("q_proj", "k_proj", "v_proj")), p["q_proj"][1])
    return {"qkv": qkv, "out": p["out_proj"], "fc1": p["fc1"], "fc2": p["fc2"],
            "head": (cfg.vocab_size, cfg.word_embed_proj_dim)}


def check(cfg, weights: int, head: int, group_size: int, kernel: str) -> None:
    """One line, before any weight is built, where a width or an int4 kernel cannot run `cfg`."""
    check_widths(matrices(cfg), weights, head, group_size, kernel)


class FusedOpt(FusedDecoder):
    """Batch-1 decoding of a transformers OPTForCausalLM: `weights` 16 or 4 for the decoder's
    projections, `head` 16 or 4 for the LM head (project_in/out stay in the model's dtype).
    `forward(ids [1, T], pos [T])` writes K/V at `pos`, returns logits."""

    def __init__(self, model, max_len: int, weights: int = 16, head: int = 16, group_size: int = 128,
                 kernel: str = "tinygemm"):
        import torch

        cfg = model.config
        if type(model).__name__ != "OPTForCausalLM" or not cfg.enable_bias \
                or not cfg.layer_norm_elementwise_affine:
            raise PipelineError(f"the fused OPT decoder runs OPT with biases and affine norms, not "
                                f"{type(model).__name__}")
        check(cfg, weights, head, group_size, kernel)
        dec, dt, dev = model.model.decoder, model.dtype, model.device
        self.nh, self.pre = cfg.num_attention_heads, cfg.do_layer_norm_before
        self.d = cfg.hidden_size // self.nh
        self.embed, self.positions = dec.embed_tokens.weight, dec.embed_positions.weight
        ends = [None if m is None else DenseLinear(m.weight) for m in (dec.project_in, dec.project_out)]
        self.project_in, self.project_out = ends   # word_embed_proj_dim != hidden_size
        self.final_norm = dec.final_layer_norm
        self.layers = []
        for layer in dec.layers:
            a = layer.self_attn
            self.layers.append(dict(
                ln1=layer.self_attn_layer_norm, ln2=layer.final_layer_norm,
                qkv=linear(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), weights, group_size, kernel),
                qkv_b=torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]),
                out=linear(a.out_proj.weight, weights, group_size, kernel), out_b=a.out_proj.bias,
                fc1=linear(layer.fc1.weight, weights, group_size, kernel), fc1_b=layer.fc1.bias,
                fc2=linear(layer.fc2.weight, weights, group_size, kernel), fc2_b=layer.fc2.bias,
                k=torch.zeros(1, self.nh, max_len, self.d, dtype=dt, device=dev),
                v=torch.zeros(1, self.nh, max_len, self.d, dtype=dt, device=dev)))
        self.head = linear(model.get_output_embeddings().weight, head, group_size, kernel)
        self.tied = head == 16 and model.get_output_embeddings().weight is self.embed
        self.causal = torch.ones(max_len, max_len, dtype=torch.bool, device=dev).tril()

    @staticmethod
    def norm(x, ln):
        import torch.nn.functional as F
        return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)

    def forward(self, ids, pos):
        import torch.nn.functional as F

        t = ids.shape[1]
        x = F.embedding(ids, self.embed)
        x = (x if self.project_in is None else self.project_in(x)) + F.embedding(pos + 2, self.positions)[None]
        mask = self.causal[pos][None, None]
        for L in self.layers:
            h = self.norm(x, L["ln1"]) if self.pre else x
            q, k, v = (L["qkv"](h) + L["qkv_b"]).view(1, t, 3 * self.nh, self.d).transpose(1, 2).chunk(3, 1)
            L["k"].index_copy_(2, pos, k)
            L["v"].index_copy_(2, pos, v)
            y = F.scaled_dot_product_attention(q, L["k"], L["v"], attn_mask=mask)
            x = x + L["out"](y.transpose(1, 2).reshape(1, t, self.nh * self.d)) + L["out_b"]
            x = x if self.pre else self.norm(x, L["ln1"])
            h = self.norm(x, L["ln2"]) if self.pre else x
            x = x + L["fc2"](F.relu(L["fc1"](h) + L["fc1_b"])) + L["fc2_b"]
            x = x if self.pre else self.norm(x, L["ln2"])
        x = self.norm(x, self.final_norm) if self.final_norm is not None else x
        return self.head(x if self.project_out is None else self.project_out(x))

    def bytes_per_token(self) -> int:
        """Bytes a decode step reads: every projection with its bias, the norms, project_in/out
        and the LM head (the embeddings are row lookups, unless the head is the token matrix)."""
        def size(*ts):
            return sum(t.numel() * t.element_size() for t in ts if t is not None)

        lin = sum(L[n].nbytes() for L in self.layers for n in ("qkv", "out", "fc1", "fc2"))
        rest = sum(size(L["qkv_b"], L["out_b"], L["fc1_b"], L["fc2_b"], L["ln1"].weight, L["ln1"].bias,
                        L["ln2"].weight, L["ln2"].bias) for L in self.layers)
        ends = sum(p.nbytes() for p in (self.project_in, self.project_out) if p is not None)
        final = size(self.final_norm.weight, self.final_norm.bias) if self.final_norm is not None else 0
        return lin + rest + ends + final + self.head.nbytes()
