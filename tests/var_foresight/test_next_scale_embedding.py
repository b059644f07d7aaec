import pytest
import torch

from var_foresight.next_scale_embedding import NextScaleEmbedding, NextScaleHead, next_scale_cross_entropy
from var_foresight.scales import ScaleSchedule


@pytest.fixture(scope="module")
def embedding() -> NextScaleEmbedding:
    torch.manual_seed(0)
    return NextScaleEmbedding(
        ScaleSchedule.from_sides([(1, 1), (2, 2), (2, 3), (4, 4)]), z_channels=8, width=16
    )


def test_teacher_forced_embedding_equals_scale_by_scale_embedding(embedding):
    inputs = torch.randn(2, 4 + 6 + 16, 8)
    together = embedding(inputs, batch=2, num_scales=4)
    pieces = [embedding.embed_scale(0, None, 2)]
    offsets = [(0, 4), (4, 10), (10, 26)]
    for k, (a, b) in enumerate(offsets, start=1):
        pieces.append(embedding.embed_scale(k, inputs[:, a:b], 2))
    torch.testing.assert_close(together, torch.cat(pieces, dim=1), atol=1e-6, rtol=0)
    assert together.shape == (2, 27, 16)


def test_embedding_of_a_prefix_of_scales(embedding):
    inputs = torch.randn(1, 10, 8)
    assert embedding(inputs, 1, 3).shape == (1, 11, 16)
    assert embedding(None, 3, 1).shape == (3, 1, 16)
    with pytest.raises(ValueError, match=r"teacher_inputs: expected shape \(1, 10, 8\) for 3 scales"):
        embedding(torch.randn(1, 9, 8), 1, 3)
    with pytest.raises(ValueError, match="num_scales"):
        embedding(None, 1, 5)
    with pytest.raises(ValueError, match=r"inputs: expected shape \(1, 6, 8\)"):
        embedding.embed_scale(2, torch.randn(1, 4, 8), 1)


def test_head_and_loss():
    head = NextScaleHead(16, 10)
    logits = head(torch.randn(2, 5, 16))
    assert logits.shape == (2, 5, 10)
    targets = [torch.randint(0, 10, (2, 1)), torch.randint(0, 10, (2, 4)), torch.randint(0, 10, (2, 9))]
    expected = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 10), torch.cat(targets[:2], 1).reshape(-1)
    )
    torch.testing.assert_close(next_scale_cross_entropy(logits, targets), expected)
    with pytest.raises(ValueError, match="indices"):
        next_scale_cross_entropy(logits[:, :4], targets)


def test_loss_over_a_subset_of_scales_counts_only_their_tokens():
    logits = torch.randn(2, 14, 10)
    targets = [torch.randint(0, 10, (2, n)) for n in (1, 4, 9)]
    ce = torch.nn.functional.cross_entropy
    only_last = ce(logits[:, 5:].reshape(-1, 10), targets[2].reshape(-1))
    torch.testing.assert_close(next_scale_cross_entropy(logits, targets, loss_scales=[2]), only_last)
    first_two = ce(logits[:, :5].reshape(-1, 10), torch.cat(targets[:2], 1).reshape(-1))
    torch.testing.assert_close(next_scale_cross_entropy(logits, targets, loss_scales=[1, 0]), first_two)
    with pytest.raises(ValueError, match="loss_scales"):
        next_scale_cross_entropy(logits, targets, loss_scales=[3])
