import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from var_foresight.metrics import per_scale_token_accuracy, psnr, ssim


def test_per_scale_token_accuracy_counts_equal_tokens_per_scale():
    target = [torch.tensor([[1]]), torch.tensor([[1, 2, 3, 4]])]
    predicted = [torch.tensor([[1]]), torch.tensor([[1, 0, 3, 0]])]
    assert per_scale_token_accuracy(predicted, target).tolist() == [1.0, 0.5]
    assert per_scale_token_accuracy(predicted[:1], target).tolist() == [1.0]  # first K scales
    with pytest.raises(ValueError, match=r"predicted\[1\]"):
        per_scale_token_accuracy([target[0], torch.zeros(1, 3, dtype=torch.long)], target)


def test_psnr_matches_its_definition():
    target = torch.zeros(2, 3, 8, 8)
    prediction = target.clone()
    prediction[0] += 0.1
    prediction[1, :, :4] += 0.2
    expected = [10 * math.log10(4 / 0.01), 10 * math.log10(4 / (0.04 / 2))]
    assert psnr(prediction, target).tolist() == pytest.approx(expected, rel=1e-5)
    assert math.isinf(float(psnr(target, target)[0]))


def _ssim_numpy(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    # independent direct evaluation of the SSIM formula with an 11x11 Gaussian window (sigma 1.5)
    coords = np.arange(11) - 5
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - 10):
            for j in range(x.shape[2] - 10):
                a, b = x[c, i : i + 11, j : j + 11], y[c, i : i + 11, j : j + 11]
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2
                cov = (w * a * b).sum() - ma * mb
                values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_a_direct_evaluation_of_the_formula():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 2, 14, 13, generator=g) * 2 - 1
    prediction = (target + 0.2 * torch.randn(1, 2, 14, 13, generator=g)).clamp(-1, 1)
    expected = _ssim_numpy(prediction[0].double().numpy(), target[0].double().numpy(), 2.0)
    assert float(ssim(prediction, target)[0]) == pytest.approx(expected, rel=1e-6)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), noise=st.floats(0.01, 1.0))
def test_ssim_is_symmetric_bounded_and_one_only_for_identical_images(seed, noise):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    b = (a + noise * torch.randn(2, 3, 16, 16, generator=g)).clamp(-1, 1)
    s = ssim(a, b)
    torch.testing.assert_close(s, ssim(b, a))
    assert bool((s <= 1).all())
    assert bool((s >= -1).all())
    assert bool((s < 1).all())
    torch.testing.assert_close(ssim(a, a), torch.ones(2))


def test_image_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="prediction: expected the target's shape"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match="prediction: expected images"):
        ssim(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))
