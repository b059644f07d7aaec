"""Joint attention: GQA/MQA sharing and the explicit mask."""

from __future__ import annotations

import pytest
import torch

from mot import joint_attention


def test_grouped_query_heads_read_their_shared_kv_head():
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 5, 8, generator=generator)
    k, v = torch.randn(2, 2, 5, 8, generator=generator), torch.randn(2, 2, 5, 8, generator=generator)
    mask = torch.rand(2, 5, 5, generator=generator) > 0.3
    mask |= torch.eye(5, dtype=torch.bool)
    grouped = joint_attention(q, k, v, mask)
    repeated = joint_attention(q, k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1), mask)
    torch.testing.assert_close(grouped, repeated)
    # query heads 0 and 1 share kv head 0: with equal queries their outputs are equal
    same_q = q.clone()
    same_q[:, 1] = same_q[:, 0]
    out = joint_attention(same_q, k, v, mask)
    torch.testing.assert_close(out[:, 0], out[:, 1])


def test_no_mask_means_every_key_is_visible():
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)
    torch.testing.assert_close(
        joint_attention(q, k, v, None), joint_attention(q, k, v, torch.ones(1, 3, 3).bool())
    )


def test_masked_keys_do_not_contribute():
    q, k, v = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)
    mask = torch.tensor([[[True, True, False], [True, False, False]]])
    out = joint_attention(q, k, v, mask)
    torch.testing.assert_close(out[0, 0, 1], v[0, 0, 0])
    assert torch.equal(out, joint_attention(q, k, v.index_fill(2, torch.tensor([2]), 1e6), mask))


def test_bad_head_layouts_and_backends_are_rejected():
    q, k = torch.randn(1, 4, 2, 4), torch.randn(1, 3, 2, 4)
    with pytest.raises(ValueError, match="dividing 4, received 3"):
        joint_attention(q, k, k, None)
    with pytest.raises(ValueError, match="backend: expected 'sdpa' or 'flex'"):
        joint_attention(q, q, q, None, backend="xformers")
