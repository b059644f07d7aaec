"""Quality of a foresight: per-scale token accuracy, and PSNR / SSIM of decoded images vs the real frame."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from var_foresight.validation import check_finite, check_int, check_number, check_tensor, type_name


def per_scale_token_accuracy(
    predicted: Sequence[torch.Tensor], target: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Fraction of equal tokens at each scale, ``(K,)`` float, over the first ``K = len(predicted)`` scales.

    predicted, target: per-scale ``(B, h_k * w_k)`` indices (``target`` may hold more scales).
    """
    for name, value in (("predicted", predicted), ("target", target)):
        if isinstance(value, torch.Tensor) or not isinstance(value, Sequence):
            raise TypeError(
                f"{name}: expected a list of per-scale (B, h_k * w_k) tensors, got {type_name(value)}"
            )
        for k, t in enumerate(value):
            check_tensor(f"{name}[{k}]", t, 2, "int", "(B, h_k * w_k)")
    if len(predicted) == 0:
        raise ValueError("predicted: expected at least one scale, got none")
    if len(predicted) > len(target):
        raise ValueError(f"predicted: {len(predicted)} scales given, target has only {len(target)}")
    out = []
    for k, (p, t) in enumerate(zip(predicted, target)):
        if p.shape != t.shape:
            raise ValueError(f"predicted[{k}]: expected shape {tuple(t.shape)}, got {tuple(p.shape)}")
        out.append((p == t).float().mean())
    return torch.stack(out)


def _check_pair(prediction: torch.Tensor, target: torch.Tensor, data_range: float) -> None:
    check_tensor("prediction", prediction, kind="float")
    check_tensor("target", target, kind="float")
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction: expected the target's shape {tuple(target.shape)}, got {tuple(prediction.shape)}"
        )
    if prediction.ndim != 4:
        raise ValueError(f"prediction: expected images (B, C, H, W), got {tuple(prediction.shape)}")
    if min(prediction.shape[1:]) < 1:
        raise ValueError(f"prediction: expected C, H, W >= 1, got {tuple(prediction.shape)}")
    if prediction.device != target.device:
        raise ValueError(
            f"target: expected a tensor on {prediction.device} (the prediction's), got {target.device}"
        )
    check_finite("prediction", prediction)
    check_finite("target", target)
    check_number("data_range", data_range, 0.0, low_open=True)


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, ``(B,)``; ``data_range`` 2 for images in [-1, 1].
    Identical images give ``inf``."""
    _check_pair(prediction, target, data_range)
    mse = (prediction.double() - target.double()).square().flatten(1).mean(dim=1)
    return (10 * torch.log10(data_range**2 / mse)).float()


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(
    prediction: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 2.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Structural similarity per image, ``(B,)`` (Wang et al. 2004: Gaussian window 11 / sigma 1.5,
    K1 = 0.01, K2 = 0.03, averaged over channels and valid window positions). The window shrinks to the
    image size for small images."""
    _check_pair(prediction, target, data_range)
    check_int("window_size", window_size, 1)
    check_number("sigma", sigma, 0.0, low_open=True)
    size = min(window_size, prediction.shape[-1], prediction.shape[-2])
    x, y = prediction.double(), target.double()
    window = _gaussian_window(size, sigma, x.shape[1], x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=x.shape[1])

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1).float()
