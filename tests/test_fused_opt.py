"""The fused batch-1 OPT decoder (stages/runtimes/fused_opt.py) computes what transformers' OPT
computes: the same logits over a prompt and each decoded step, for OPT-350m's layout (norms after
the residual add, a narrower word embedding) and the other OPTs' (norms before, a final norm)."""
import pytest

torch = pytest.importorskip("torch")
from transformers import OPTConfig, OPTForCausalLM  # noqa: E402

from stages.core.errors import PipelineError  # noqa: E402
from stages.models import opt_shapes as S  # noqa: E402
from stages.runtimes import fused_opt as F  # noqa: E402
from stages.runtimes import int4_linear as Q  # noqa: E402


def tiny(pre: bool, proj: int = 64, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    cfg = OPTConfig(hidden_size=128, ffn_dim=256, num_hidden_layers=2, num_attention_heads=4,
                    vocab_size=512, max_position_embeddings=64, word_embed_proj_dim=proj,
                    do_layer_norm_before=pre, dropout=0.0)
    model = OPTForCausalLM(cfg).to(dtype).eval()
    with torch.no_grad():   # transformers initialises biases and norms to 0 and 1: make them count
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("pre,proj", [(False, 64), (True, 128)])
def test_prompt_and_steps_match_transformers(pre, proj):
    model = tiny(pre, proj)
    ids = torch.randint(3, 512, (1, 12))
    with torch.inference_mode():
        ref = model(ids).logits
        dec = F.FusedOpt(model, max_len=16)
        got = dec.forward(ids[:, :8], torch.arange(8))
        steps = [dec.forward(ids[:, i:i + 1], torch.tensor([i])) for i in range(8, 12)]
    torch.testing.assert_close(got, ref[:, :8], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.cat(steps, 1), ref[:, 8:12], atol=1e-4, rtol=1e-4)
    assert dec.tied and (dec.project_in is None) is (proj == 128)


def test_a_wrong_position_or_a_missing_bias_changes_the_logits():
    model = tiny(False)
    ids = torch.randint(3, 512, (1, 9))
    with torch.inference_mode():
        ref = model(ids).logits[:, -1]
        dec = F.FusedOpt(model, max_len=16)
        dec.forward(ids[:, :8], torch.arange(8))
        wrong = dec.forward(ids[:, 8:], torch.tensor([9]))[:, -1]   # skips a position
        dec.reset()
        dec.layers[0]["fc1_b"] = torch.zeros_like(dec.layers[0]["fc1_b"])
        no_bias = dec.forward(ids, torch.arange(9))[:, -1]
    assert (wrong - ref).abs().max() > 1e-3 and (no_bias - ref).abs().max() > 1e-3


def test_int4_decoder_follows_its_dequantized_model():
    model, deq = tiny(False, dtype=torch.bfloat16), tiny(False, dtype=torch.bfloat16)
    with torch.no_grad():
        for name, p in deq.named_parameters():
            if p.ndim == 2 and "embed" not in name and "project" not in name:
                p.copy_(Q.int4_dequant(p, 32).to(p.dtype))
    ids = torch.randint(3, 512, (1, 10))
    with torch.inference_mode():
        ref = deq(ids).logits
        got = F.FusedOpt(model, max_len=16, weights=4, group_size=32).forward(ids, torch.arange(10))
    assert (got.float() - ref.float()).abs().max() < 0.05 * ref.float().abs().max()
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_bytes_per_token_counts_every_weight_but_the_position_rows():
    model = tiny(False)
    got = F.FusedOpt(model, max_len=8).bytes_per_token()
    positions = model.model.decoder.embed_positions.weight.numel()
    assert got == (sum(p.numel() for p in model.parameters()) - positions) * 4   # tied head, float32


def test_the_opt_350m_shape_fits_every_int4_kernel_and_llama_is_refused():
    cfg = S.config("opt-350m")
    assert F.matrices(cfg) == {"qkv": (3072, 1024), "out": (1024, 1024), "fc1": (4096, 1024),
                               "fc2": (1024, 4096), "head": (50272, 512)}
    for kernel in Q.INT4:
        F.check(cfg, 4, 4, 128, kernel)
    F.check(cfg, 4, 16, 1024, "tinygemm")   # the head in bfloat16: only the projections tile
    with pytest.raises(PipelineError, match="head: int4: a 50272x512 matrix has in % group_size 1024"):
        F.check(cfg, 4, 4, 1024, "tinygemm")
    from transformers import LlamaConfig, LlamaForCausalLM
    llama = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=128))
    with pytest.raises(PipelineError, match="runs OPT"):
        F.FusedOpt(llama, max_len=8)
