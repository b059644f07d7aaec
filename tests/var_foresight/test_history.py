import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from var_foresight.history import HistoryEncoderConfig, TemporalHistoryEncoder


@pytest.fixture(scope="module")
def encoder() -> TemporalHistoryEncoder:
    torch.manual_seed(0)
    config = HistoryEncoderConfig(z_channels=8, width=32, grid=(2, 3), max_frames=6, num_heads=2)
    return TemporalHistoryEncoder(config).eval().requires_grad_(False)


@settings(max_examples=6, deadline=None)
@given(num_frames=st.integers(1, 6), batch=st.integers(1, 3))
def test_any_number_of_frames_gives_the_same_token_count(encoder, num_frames, batch):
    out = encoder(torch.randn(batch, num_frames, 8, 8, 12))
    assert out.shape == (batch, 6, 32)
    assert bool(torch.isfinite(out).all())


@settings(max_examples=6, deadline=None)
@given(valid_frames=st.integers(1, 5), seed=st.integers(0, 1000))
def test_padded_frames_never_influence_the_output(encoder, valid_frames, seed):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(1, 6, 8, 8, 8, generator=g)
    valid = torch.zeros(1, 6, dtype=torch.bool)
    valid[:, 6 - valid_frames :] = True  # histories are padded at the old end
    other = frames.clone()
    other[:, : 6 - valid_frames] = torch.randn(1, 6 - valid_frames, 8, 8, 8, generator=g) * 100
    assert torch.equal(encoder(frames, valid), encoder(other, valid))
    # and a padded history equals the unpadded one
    torch.testing.assert_close(
        encoder(frames, valid), encoder(frames[:, 6 - valid_frames :]), atol=1e-5, rtol=0
    )


def test_every_frame_and_its_order_matter(encoder):
    frames = torch.randn(1, 3, 8, 8, 8)
    base = encoder(frames)
    changed = frames.clone()
    changed[:, 0] += 1.0
    assert not torch.allclose(encoder(changed), base)
    assert not torch.allclose(encoder(frames.flip(1)), base)  # ages make order matter


def test_bad_histories_are_rejected_with_the_argument_named(encoder):
    with pytest.raises(ValueError, match=r"frames: expected 1\.\.6 frames, got 7"):
        encoder(torch.randn(1, 7, 8, 4, 4))
    with pytest.raises(ValueError, match=r"frames: expected shape \(B, T, 8, H, W\)"):
        encoder(torch.randn(1, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="at least one valid frame"):
        encoder(torch.randn(1, 2, 8, 4, 4), torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="frame_valid"):
        encoder(torch.randn(1, 2, 8, 4, 4), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_heads"):
        HistoryEncoderConfig(width=30, num_heads=4)
