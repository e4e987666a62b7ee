"""The gpu profile's Triton int4 kernel (stages/runtimes/int4_gemv.py), run by Triton's interpreter
on the CPU: every block config computes x W^T for the weights its codes, scales and minimums
stand for, and the linear that uses it agrees with the tensor-op dequantization."""
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1":   # conftest sets it where there is no GPU
    pytest.skip("Triton's interpreter is off (a GPU machine): these tests feed it CPU tensors",
                allow_module_level=True)

from stages.runtimes import int4_gemv as T  # noqa: E402
from stages.runtimes import int4_linear as Q  # noqa: E402


def reference(lin: Q.Int4Triton, x):
    """x W^T in float32 for the codes and the bfloat16 scales and minimums the linear stores."""
    w = (lin.unpack().float() * lin.scale.float() + lin.lo.float()).reshape(lin.shape)
    return x.float() @ w.T


@pytest.mark.parametrize("n,k,g", [(64, 256, 128), (96, 512, 64), (32, 1024, 128)])
def test_every_block_config_computes_the_dequantized_product(n, k, g):
    torch.manual_seed(n)
    lin, x = Q.Int4Triton(torch.randn(n, k), g), torch.randn(k).to(torch.bfloat16)
    want = reference(lin, x)
    configs = T._fitting(T.CONFIGS, {"N": n, "K": k, "G": g})
    assert len(configs) >= 3
    for c in configs:
        y = T.gemv(x, lin.packed, lin.scale.reshape(n, -1), lin.lo.reshape(n, -1), g, c)
        assert y.shape == (n,) and y.dtype == torch.bfloat16
        assert (y.float() - want).abs().max() <= 1e-2 * want.abs().max(), c


def test_swapped_nibbles_or_a_missing_minimum_are_caught():
    torch.manual_seed(1)
    n, k, g = 64, 256, 128
    lin, x = Q.Int4Triton(torch.randn(n, k), g), torch.randn(k).to(torch.bfloat16)
    want, c = reference(lin, x), T._fitting(T.CONFIGS, {"N": n, "K": k, "G": g})[0]
    swapped = (lin.packed >> 4) | (lin.packed << 4)
    for args in ((swapped, lin.scale, lin.lo), (lin.packed, lin.scale, torch.zeros_like(lin.lo))):
        y = T.gemv(x, args[0], args[1].reshape(n, -1), args[2].reshape(n, -1), g, c)
        assert (y.float() - want).abs().max() > 5e-2 * want.abs().max()


def test_the_triton_linear_takes_one_row_through_the_kernel_and_a_prompt_through_tensor_ops(monkeypatch):
    monkeypatch.setattr(T._tuned, "configs", [T.CONFIGS[1]])   # one config: the interpreter cannot time
    torch.manual_seed(2)
    w = torch.randn(64, 256)
    lin, ops = Q.linear(w, 4, 32, kernel="triton"), Q.Int4Dequant(w, 32)
    for x in (torch.randn(1, 1, 256), torch.randn(1, 5, 256)):
        x = x.to(torch.bfloat16)
        got, want = lin(x), ops(x)
        assert got.shape == want.shape
        assert (got.float() - want.float()).abs().max() <= 2e-2 * want.float().abs().max()
    assert lin.nbytes() == ops.nbytes()


def test_a_matrix_no_block_tiles_is_refused():
    x = torch.randn(256).to(torch.bfloat16)
    for n, config in ((63, None), (64, T.triton.Config({"BLOCK_N": 2, "GROUPS": 8}))):
        lin = Q.Int4Triton(torch.randn(n, 256), 128)
        with pytest.raises(ValueError, match="no block size tiles"):
            T.gemv(x, lin.packed, lin.scale.reshape(n, -1), lin.lo.reshape(n, -1), 128, config)
