"""Wanda and SparseGPT (stages/methods/lm/wanda.py, sparsegpt.py) on cases checked by hand,
and the property each paper claims over magnitude pruning."""
import pytest

torch = pytest.importorskip("torch")

from stages.methods.lm import sparsegpt, wanda   # noqa: E402


def linear(weight) -> "torch.nn.Linear":
    w = torch.tensor(weight, dtype=torch.float32)
    m = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        m.weight.copy_(w)
    return m


def stat(kind, m, x):
    s = kind(m)
    s.add(x)
    return s


def test_wanda_weighs_each_weight_by_its_inputs_norm():
    # feature 0's inputs are 4x the others': |W| x ||X_j|| = [[4, 2, 3, 4], [16, 3, 2, 1]]
    m = linear([[1, 2, 3, 4], [4, 3, 2, 1]])
    x = torch.tensor([[4.0, 1.0, 1.0, 1.0]])
    wanda.prune_linear(m, stat(wanda.SumSquares, m, x), 0.5, "unstructured")
    assert m.weight.tolist() == [[1, 0, 0, 4], [4, 3, 0, 0]]   # magnitude would keep [0, 0, 3, 4] in row 0


def test_sparsegpt_prunes_the_redundant_weight_and_moves_its_work_to_the_other():
    # two inputs that are always equal: H = c [[1, 1], [1, 1]] (+1 % damping). The OBS score
    # w^2 / [H^-1 chol]_jj^2 is lowest for w0 although |w0| > |w1|, and its error goes to w1:
    # w1 - [H^-1]_01 / [H^-1]_00 = 0.9 + 1 / 1.01 (by hand); the output barely moves
    m = linear([[1.0, 0.9]])
    v = torch.linspace(-1, 1, 50)[:, None]
    sparsegpt.prune_linear(m, stat(sparsegpt.Hessian, m, torch.cat([v, v], 1)), 0.5, "unstructured")
    assert m.weight[0, 0] == 0 and m.weight[0, 1].item() == pytest.approx(0.9 + 1 / 1.01, rel=1e-6)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_2_4_zeroes_two_of_every_four_inputs(method):
    torch.manual_seed(0)
    m = torch.nn.Linear(64, 16, bias=False)
    x = torch.randn(256, 64)
    if method == "wanda":
        wanda.prune_linear(m, stat(wanda.SumSquares, m, x), 0.5, "2:4")
    else:
        sparsegpt.prune_linear(m, stat(sparsegpt.Hessian, m, x), 0.5, "2:4", block_size=32)
    zeros = (m.weight == 0).reshape(16, -1, 4).sum(-1)
    assert (zeros == 2).all()


@pytest.mark.parametrize("sparsity", [0.3, 0.5])
def test_calibrated_pruning_reconstructs_the_outputs_better_than_magnitude(sparsity):
    """Correlated inputs with a few large features (as in LLMs): at the same sparsity, SparseGPT's
    and Wanda's outputs stay closer to the dense layer's than magnitude pruning's."""
    torch.manual_seed(1)
    base = torch.randn(512, 16) @ torch.randn(16, 96) + 0.1 * torch.randn(512, 96)
    x = base * torch.where(torch.arange(96) < 4, 8.0, 1.0)   # 4 outlier features
    dense = torch.nn.Linear(96, 48, bias=False)
    ref = x @ dense.weight.T

    def error(prune) -> float:
        m = torch.nn.Linear(96, 48, bias=False)
        m.load_state_dict(dense.state_dict())
        prune(m)
        assert (m.weight == 0).float().mean().item() == pytest.approx(sparsity, abs=0.01)
        return ((x @ m.weight.T - ref).norm() / ref.norm()).item()

    def magnitude(m):
        k = int(96 * sparsity)
        with torch.no_grad():
            m.weight[torch.zeros_like(m.weight, dtype=torch.bool).scatter_(
                1, m.weight.abs().argsort(1)[:, :k], True)] = 0

    mag = error(magnitude)
    wan = error(lambda m: wanda.prune_linear(m, stat(wanda.SumSquares, m, x), sparsity, "unstructured"))
    sgpt = error(lambda m: sparsegpt.prune_linear(m, stat(sparsegpt.Hessian, m, x), sparsity, "unstructured", block_size=32))
    assert sgpt < wan < mag, (sgpt, wan, mag)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_the_layer_loop_feeds_each_linear_what_the_models_own_forward_does(arch, tiny_hf, tiny_gemma3):
    """Unpruned, the loop's statistics equal those hooked in the model's own forward: the
    recorded masks and rotary embeddings (Gemma 3 alternates sliding and global layers) are
    the ones each layer gets."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained({"llama": tiny_hf, "gemma3": tiny_gemma3}[arch],
                                                 dtype=torch.float32).eval()
    calib = [{"input_ids": [[1, 504, 2443, 314, 253, 3474, 30, 378] * (k + 2)]} for k in range(3)]
    looped = {}
    wanda.layer_by_layer(model, calib, wanda.SumSquares, lambda m, s: looped.setdefault(id(m), s.value))
    direct, hooks = {}, []
    for m in model.model.layers.modules():
        if isinstance(m, torch.nn.Linear):
            direct[id(m)] = wanda.SumSquares(m)
            hooks.append(m.register_forward_hook(lambda mod, inp, out: direct[id(mod)].add(inp[0])))
    with torch.no_grad():
        for ex in calib:
            model(input_ids=torch.tensor(ex["input_ids"]), use_cache=False)
    assert looped.keys() == direct.keys() and len(looped) == 7 * len(model.model.layers)
    for key, value in looped.items():
        torch.testing.assert_close(value, direct[key].value, rtol=1e-6, atol=1e-9)
