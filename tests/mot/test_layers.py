"""Gemma building blocks: RMSNorm (1 + w), GeGLU with tanh-GELU, split-half rotary in fp32."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mot import GeGLU, RMSNorm, apply_rotary, rotary_cos_sin, rotary_table


def test_rmsnorm_scales_by_one_plus_weight():
    norm = RMSNorm(4, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.0, 1.0, -0.5, 2.0]))
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    rms = math.sqrt((1 + 4 + 9 + 16) / 4 + 1e-6)
    expected = torch.tensor([[1.0, 2.0 * 2, 3.0 * 0.5, 4.0 * 3]]) / rms
    torch.testing.assert_close(norm(x), expected)


def test_rmsnorm_computes_in_fp32_and_returns_the_input_dtype():
    norm = RMSNorm(8).to(torch.bfloat16)
    x = (torch.randn(3, 8) * 1e3).to(torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    expected = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(out, expected.to(torch.bfloat16))


def test_geglu_is_down_of_tanh_gelu_gate_times_up():
    mlp = GeGLU(4, 6)
    x = torch.randn(2, 4)
    gate = mlp.gate_proj(x)
    tanh_gelu = 0.5 * gate * (1 + torch.tanh(math.sqrt(2 / math.pi) * (gate + 0.044715 * gate**3)))
    torch.testing.assert_close(mlp(x), mlp.down_proj(tanh_gelu * mlp.up_proj(x)))


@settings(max_examples=20, deadline=None)
@given(shift=st.integers(0, 500), i=st.integers(0, 40), j=st.integers(0, 40))
def test_rotary_scores_depend_only_on_the_position_difference(shift, i, j):
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=generator), torch.randn(1, 1, 1, 16, generator=generator)

    def score(pq: int, pk: int) -> torch.Tensor:
        cq, sq = rotary_cos_sin(torch.tensor([[pq]]), 16)
        ck, sk = rotary_cos_sin(torch.tensor([[pk]]), 16)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    torch.testing.assert_close(score(i + shift, j + shift), score(i, j), atol=1e-4, rtol=1e-4)


def test_rotary_is_split_half_rotation_that_keeps_norms():
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64).float()
    cos, sin = rotary_cos_sin(torch.arange(5).repeat(2, 1), 8)
    out = apply_rotary(x, cos, sin)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    # dimension pair (0, 4) of position 1 turns by angle 1 (frequency base**0)
    c, s = math.cos(1.0), math.sin(1.0)
    torch.testing.assert_close(out[..., 1, 0], x[..., 1, 0] * c - x[..., 1, 4] * s)
    torch.testing.assert_close(out[..., 1, 4], x[..., 1, 4] * c + x[..., 1, 0] * s)


def test_rotary_table_values_do_not_depend_on_the_call_size():
    small_cos, _ = rotary_cos_sin(torch.arange(3)[None], 16)
    large_cos, _ = rotary_cos_sin(torch.arange(3000)[None], 16)  # grows the cached table
    assert torch.equal(small_cos[0], large_cos[0, :3])
    assert rotary_table(10, 16)[0].shape[0] >= 3000


def test_rotary_keeps_bf16_inputs_bf16():
    x = torch.randn(1, 2, 4, 8).to(torch.bfloat16)
    cos, sin = rotary_cos_sin(torch.arange(4)[None], 8)
    assert apply_rotary(x, cos, sin).dtype == torch.bfloat16


def test_odd_head_dim_is_rejected():
    with pytest.raises(ValueError, match="head_dim: expected an even number, received 7"):
        rotary_cos_sin(torch.arange(3)[None], 7)


@settings(max_examples=40, deadline=None)
@given(
    width=st.sampled_from([4, 7, 16, 64, 192, 1024, 2048]),
    rows=st.integers(1, 40),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    seed=st.integers(0, 2**16),
)
def test_rmsnorm_fused_kernel_equals_gemmas_five_ops_bit_for_bit(width, rows, scale, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    norm = RMSNorm(width)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(width, generator=g) * 0.1)
    norm = norm.to(dtype)
    x = (torch.randn(rows, width, generator=g) * scale).to(dtype)
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + norm.eps)
    expected = (h * (1.0 + norm.weight.float())).type_as(x)
    assert torch.equal(norm(x), expected)
