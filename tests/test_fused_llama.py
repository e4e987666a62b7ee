"""The fused batch-1 decoder (stages/runtimes/fused_llama.py, int4_linear.py) computes what transformers'
Llama computes: same logits over a prompt and each decoded step, and its 4-bit linears compute
x W^T for the weights their codes stand for."""
import pytest

torch = pytest.importorskip("torch")
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from stages.core.errors import PipelineError  # noqa: E402
from stages.runtimes import fused_llama as F  # noqa: E402
from stages.runtimes import int4_linear as Q  # noqa: E402


def tiny(tie=True, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                      max_position_embeddings=64, tie_word_embeddings=tie, rope_theta=10000.0)
    return LlamaForCausalLM(cfg).to(dtype).eval()


@pytest.mark.parametrize("tie", [True, False])
def test_prompt_and_steps_match_transformers(tie):
    model = tiny(tie)
    ids = torch.randint(0, 512, (1, 12))
    with torch.inference_mode():
        ref = model(ids).logits
        dec = F.FusedLlama(model, max_len=16)
        got = dec.forward(ids[:, :8], torch.arange(8))           # a prompt ...
        steps = [dec.forward(ids[:, i:i + 1], torch.tensor([i])) for i in range(8, 12)]  # ... then steps
    torch.testing.assert_close(got, ref[:, :8], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.cat(steps, 1), ref[:, 8:12], atol=1e-4, rtol=1e-4)
    assert dec.tied is tie


def test_a_wrong_cache_position_changes_the_logits():
    model = tiny()
    ids = torch.randint(0, 512, (1, 9))
    with torch.inference_mode():
        ref = model(ids).logits[:, -1]
        dec = F.FusedLlama(model, max_len=16)
        dec.forward(ids[:, :8], torch.arange(8))
        wrong = dec.forward(ids[:, 8:], torch.tensor([9]))[:, -1]   # skips a position
    assert (wrong - ref).abs().max() > 1e-3


def test_int4_linear_computes_with_the_weights_its_codes_stand_for():
    torch.manual_seed(1)
    w, x = torch.randn(64, 256), torch.randn(3, 256).to(torch.bfloat16)
    lin = Q.Int4Linear(w, group_size=32)
    want = x.float() @ Q.int4_dequant(w, 32).T
    got = lin(x).float()
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    assert (want - x.float() @ w.T).abs().max() > 0.1      # the codes are really 4 bits
    assert lin.nbytes() == 64 * 256 // 2 + (256 // 32) * 64 * 2 * 2


def test_int4_decoder_follows_its_dequantized_model():
    model = tiny(dtype=torch.bfloat16)
    deq = tiny(dtype=torch.bfloat16)
    with torch.no_grad():
        for name, p in deq.named_parameters():
            if p.ndim == 2 and "embed" not in name:
                p.copy_(Q.int4_dequant(p, 32).to(p.dtype))
        deq.lm_head.weight = torch.nn.Parameter(Q.int4_dequant(model.lm_head.weight, 32).to(torch.bfloat16))
        deq.config.tie_word_embeddings = False
    ids = torch.randint(0, 512, (1, 10))
    with torch.inference_mode():
        ref = deq(ids).logits
        got = F.FusedLlama(model, max_len=16, weights=4, head=4, group_size=32).forward(ids, torch.arange(10))
    assert (got.float() - ref.float()).abs().max() < 0.05 * ref.float().abs().max()
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_bytes_per_token_counts_a_tied_head_once_and_int4_as_half_bytes():
    model = tiny()
    dense = F.FusedLlama(model, max_len=8).bytes_per_token()
    params = sum(p.numel() for p in model.parameters()) * 4     # tied: the head is the embedding
    assert dense == params
    small = F.FusedLlama(model.to(torch.bfloat16), max_len=8, weights=4, head=4, group_size=32)
    assert small.bytes_per_token() < dense / 4 / 2 * 1.4


def test_refuses_other_architectures_and_widths():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    q = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                     num_attention_heads=4, num_key_value_heads=2, vocab_size=128))
    with pytest.raises(PipelineError, match="Llama"):
        F.FusedLlama(q, max_len=8)
    with pytest.raises(PipelineError, match="16 or 4"):
        F.FusedLlama(tiny(), max_len=8, weights=8)


def test_the_fused_dequant_linear_computes_what_the_int4_kernel_does():
    torch.manual_seed(2)
    w, x = torch.randn(64, 256), torch.randn(2, 256).to(torch.bfloat16)
    fused, kernel = Q.Int4Dequant(w, 32), Q.Int4Linear(w, 32)
    want = x.float() @ Q.int4_dequant(w, 32).T
    assert (fused(x).float() - want).abs().max() < 0.05 * want.abs().max()
    assert (fused(x).float() - kernel(x).float()).abs().max() < 0.05 * want.abs().max()
    assert fused.nbytes() == 64 * 256 // 2 + 2 * (256 // 32) * 64 * 2


def test_the_greedy_loop_decodes_what_transformers_generates():
    model = tiny()
    prompt = torch.randint(0, 512, (1, 6))
    with torch.inference_mode():
        want = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                              max_new_tokens=6, min_new_tokens=6, pad_token_id=0)[0, 6:].tolist()
        dec = F.FusedLlama(model, max_len=16)
        first = dec.next_token(prompt, torch.arange(6))[1]
        loop = F.GreedyLoop(dec.next_token, 6, "cpu")
        for _ in range(2):   # a second window from the same start decodes the same tokens
            loop.rewind(first)
            got = [first.item()] + [loop.step().argmax(-1).item() for _ in range(5)]
            assert got == want and loop.pos.item() == 11


def test_matrices_are_the_shapes_of_the_linears_the_decoder_builds():
    model = tiny(tie=False)
    dec = F.FusedLlama(model, max_len=8)
    built = {n: tuple(dec.layers[0][n].w.shape) for n in ("qkv", "o", "gate_up", "down")}
    assert F.matrices(model.config) == built | {"head": tuple(dec.head.w.shape)}
