"""The GemLite int4 linear (stages/runtimes/int4_linear.Int4GemLite) on the CPU. GemLite itself
reads the GPU's properties when imported, so here a stand-in module implements the contract
its README and `GemLiteLinear.pack` state: HQQ's W ~ (W_q - zeros) * scales per group, stored
with fma_mode as -zeros * scales. What is tested is ours: the conversion from groups()'s scale
and minimum, and the check that refuses a linear whose product is wrong."""
import sys
import types

import pytest
import torch

from stages.core.errors import PipelineError
from stages.runtimes import int4_linear as Q


class FakeGemLite(torch.nn.Module):
    """GemLiteLinear's packing contract in plain torch (no kernel)."""
    drop_zeros = False   # a broken packing: the group offsets lost
    noise = 0.0          # rounding in the kernel, as a fraction of each output's RMS

    def __init__(self, W_nbits, group_size, in_features, out_features, input_dtype, output_dtype):
        super().__init__()
        assert W_nbits == 4 and in_features % group_size == 0
        self.g, self.k, self.n = group_size, in_features, out_features

    def pack(self, W_q, scales, zeros, bias=None, fma_mode=True):
        assert W_q.dtype == torch.uint8 and W_q.shape == (self.n, self.k) and int(W_q.max()) <= 15
        self.W_q = W_q
        self.scales = scales.view(self.n, -1).t()
        self.zeros = (-zeros.float() * scales.float()).to(zeros.dtype).view(self.n, -1).t()
        if self.drop_zeros:
            self.zeros = torch.zeros_like(self.zeros)

    def forward(self, x):
        q = self.W_q.float().reshape(self.n, -1, self.g)
        w = q * self.scales.t().float()[..., None] + self.zeros.t().float()[..., None]
        y = x.float() @ w.reshape(self.n, self.k).T
        return (y + self.noise * y.pow(2).mean().sqrt() * torch.randn_like(y)).to(x.dtype)


@pytest.fixture
def gemlite(monkeypatch):
    mod = types.SimpleNamespace(GemLiteLinear=FakeGemLite, DType=types.SimpleNamespace(BF16="bf16"),
                                caching=[], set_kernel_caching=lambda on: mod.caching.append(on))
    monkeypatch.setitem(sys.modules, "gemlite", mod)
    monkeypatch.setattr(FakeGemLite, "drop_zeros", False)
    monkeypatch.setattr(FakeGemLite, "noise", 0.0)
    return FakeGemLite


def test_the_gemlite_linear_computes_the_dequantized_product(gemlite):
    torch.manual_seed(0)
    w = torch.randn(96, 256) * 0.05 + 0.02
    lin = Q.linear(w, 4, 64, "gemlite")
    x = torch.randn(3, 1, 256, dtype=torch.bfloat16)
    want = x.float() @ Q.int4_dequant(w, 64).T
    got = lin(x).float()
    assert got.shape == (3, 1, 96)
    assert (got - want).abs().max() <= 2e-2 * want.abs().max()
    # what it reads: the stand-in keeps a code a byte (GemLite packs 8 in an int32), a bf16 scale and zero a group
    assert lin.nbytes() == 96 * 256 + 2 * 2 * 96 * 256 // 64


def test_a_wrong_gemlite_product_is_refused_when_built(gemlite):
    gemlite.drop_zeros = True
    with pytest.raises(PipelineError, match=r"gemlite: a 96x256 int4 product is off by .* \(RMS, relative\), "
                                            r"over a third of int4's own error"):
        Q.linear(torch.randn(96, 256) * 0.05 + 0.3, 4, 64, "gemlite")


def test_kernel_rounding_passes_only_well_under_int4s_own_error(gemlite):
    """Rounding in the kernel (bfloat16 atomic adds) is accepted while it stays under a third of
    the error the int4 codes make; as large as that error, it is refused."""
    torch.manual_seed(0)
    w = torch.randn(512, 1024) * 0.05
    lin = Q.linear(w, 4, 128, "gemlite")
    assert lin.error < 0.01 and 0.03 < lin.int4_error < 0.3   # the stand-in computes in float32
    gemlite.noise = 0.02
    assert lin.int4_error / 3 > Q.linear(w, 4, 128, "gemlite").error > 0.01
    gemlite.noise = lin.int4_error
    with pytest.raises(PipelineError, match="over a third of int4's own error"):
        Q.linear(w, 4, 128, "gemlite")


def test_a_matrix_gemlite_cannot_tile_is_one_line():
    assert Q.unfit(96, 256, 64, "gemlite") == ""
    assert "in % 32 == 0" in Q.unfit(96, 240, 48, "gemlite")
    assert "in % group_size" in Q.unfit(96, 200, 64, "gemlite")


def test_the_cached_gemlite_linear_turns_gemlites_output_ring_on(gemlite):
    mod = sys.modules["gemlite"]
    w = torch.randn(96, 256) * 0.05
    assert Q.linear(w, 4, 64, "gemlite").error < 0.01 and mod.caching == []
    lin = Q.linear(w, 4, 64, "gemlite_cached")
    assert mod.caching == [True] and isinstance(lin, Q.Int4GemLite) and lin.error < 0.01
    assert Q.unfit(96, 240, 48, "gemlite_cached") == Q.unfit(96, 240, 48, "gemlite") != ""
