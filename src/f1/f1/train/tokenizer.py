"""Stage 0: the F1 model's VQ-VAE tokenizer, trained on single frames of the foresight camera.

:class:`TokenizerObjective` wraps an :class:`~f1.model.F1Model` as a ``TrainableModel`` whose training pass
is the tokenizer's: frames ``observation.images.<foresight camera>`` of the training windows, resized to the
tokenizer's size, through the VQ-VAE. Its state is the F1 model's (``state_dict`` and ``load_state_dict``
are the model's), so its checkpoints are ordinary F1 checkpoints: a later stage starts from them with
``init_from`` and ``f1 export`` makes a policy of them, carrying the trained tokenizer.

Losses (0-dim, means over the batch): ``reconstruction`` (MSE on [-1, 1]), ``quantizer`` (VAR's commitment and
codebook loss) and ``foreground`` (the MSE on the pixels that differ from the background, the per-pixel
median of the dataset's frames: on a table scene the objects are a few percent of the pixels, so a plain
MSE says little about them). Metrics, logged but never weighted: ``psnr_db``, ``foreground_psnr_db`` (the
overall PSNR for a batch without foreground pixels),
``perplexity`` (``exp`` of the code entropy, mean over scales) and ``codebook_usage`` (percent of codes in
use, mean over scales).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from f1.errors import ConfigError, InputError
from f1.keys import camera_key
from f1.model import F1Model
from f1.model.inputs import resize_frames
from var_foresight.codebook_health import codebook_health, dead_thresholds, perplexity_per_scale

__all__ = ["FOREGROUND_THRESHOLD", "TokenizerObjective", "background_median"]

#: A pixel is foreground where some channel differs from the background median by more than this, in [0, 1].
FOREGROUND_THRESHOLD = 0.1
#: Frames read to estimate the background median (spread evenly over the dataset).
BACKGROUND_FRAMES = 64
_DEAD_FRACTION = 0.08  # var_foresight's TokenizerTrainingConfig default


def background_median(
    dataset: Dataset, key: str, size: tuple[int, int], *, frames: int = BACKGROUND_FRAMES
) -> torch.Tensor:
    """The per-pixel median ``(3, H, W)`` in [0, 1] of up to ``frames`` items of ``dataset`` (evenly spread,
    so the same items every time), each ``item[key]`` ``(3, h, w)`` in [0, 1] resized to ``size``."""
    count = len(dataset)  # type: ignore[arg-type]
    if count < 1:
        raise ValueError("data: the dataset holds no sample (an empty dataset?)")
    picked = sorted({int(i) for i in np.linspace(0, count - 1, min(frames, count))})
    images = []
    for index in picked:
        item = dataset[index]
        if not isinstance(item, Mapping) or not isinstance(item.get(key), torch.Tensor):
            raise ConfigError(
                f"the tokenizer stage trains on {key!r}, which sample {index} of the dataset does not hold"
            )
        images.append(resize_frames(item[key][None].float(), size)[0])
    return torch.stack(images).median(dim=0).values


class TokenizerObjective(nn.Module):
    """The tokenizer's training pass around an F1 model (see the module docstring).

    Args:
        model: an :class:`~f1.model.F1Model` in a mode with a tokenizer (``f1``, ``history_no_foresight``).
        background: ``(3, H, W)`` in [0, 1] at the tokenizer's image size (:func:`background_median`).

    The tokenizer's parameters are made trainable here (the model freezes them); the stage freezes the rest.
    """

    loss_names: tuple[str, ...] = ("reconstruction", "quantizer", "foreground")
    known_loss_names: tuple[str, ...] = loss_names
    metric_names: tuple[str, ...] = ("psnr_db", "foreground_psnr_db", "perplexity", "codebook_usage")

    def __init__(self, model: F1Model, background: torch.Tensor) -> None:
        super().__init__()
        if not isinstance(model, F1Model):
            raise ConfigError(
                f"the tokenizer stage trains the VQ-VAE of an F1 model; the model factory built a "
                f"{type(model).__name__}"
            )
        if model.generation is None:
            raise ConfigError(
                f"the tokenizer stage: mode {model.config.mode!r} has no VQ-VAE tokenizer (it encodes no "
                "frames); train the tokenizer of a mode that has one (f1, history_no_foresight)"
            )
        self.size = tuple(model.generation.image_size)
        if not isinstance(background, torch.Tensor) or tuple(background.shape) != (3, *self.size):
            shape = (
                tuple(background.shape) if isinstance(background, torch.Tensor) else type(background).__name__
            )
            raise InputError(f"background: expected (3, {self.size[0]}, {self.size[1]}), received {shape}")
        self.model = model
        self.camera = camera_key(model.config.foresight_camera)
        self.register_buffer("background", background.float() * 2 - 1, persistent=False)
        for parameter in self.vqvae.parameters():
            parameter.requires_grad_(True)

    @property
    def vqvae(self) -> nn.Module:
        """The model's tokenizer (the module this objective trains)."""
        assert self.model.generation is not None  # checked at construction
        return self.model.generation.tokenizer

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The F1 model's parameter groups (the stage freezes all but ``tokenizer``)."""
        return self.model.parameter_groups()

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """The F1 model's state: checkpoints of this stage are F1 checkpoints."""
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load an F1 model's state (see :meth:`state_dict`)."""
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

    def train(self, mode: bool = True) -> TokenizerObjective:
        """The tokenizer follows ``mode`` (the F1 model alone keeps it in eval mode: it is frozen there)."""
        super().train(mode)
        self.vqvae.train(mode)
        return self

    def forward(
        self, batch: Mapping[str, Any], *, generation_scales: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Losses and metrics of one batch; ``batch[observation.images.<foresight camera>]`` ``(B, 3, H, W)``
        in [0, 1], any size (resized). ``generation_scales`` is ignored (the tokenizer has all scales)."""
        frames = batch.get(self.camera) if isinstance(batch, Mapping) else None
        if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
            received = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise InputError(f"{self.camera}: expected frames (B, 3, H, W) in [0, 1], received {received}")
        images = resize_frames(frames.float(), self.size).clamp(0, 1) * 2 - 1
        with torch.autocast(images.device.type, enabled=False):  # the tokenizer trains in float32
            reconstruction, quantized = self.vqvae(images)
            squared = (reconstruction.float() - images).pow(2).mean(dim=1)  # (B, H, W)
            foreground = (images - self.background).abs().amax(dim=1) > 2 * FOREGROUND_THRESHOLD
            pixels = foreground.sum()
            foreground_error = (squared * foreground).sum() / pixels.clamp_min(1)
            reconstruction_error = squared.mean()
        with torch.no_grad():
            quantizer = self.vqvae.quantize
            thresholds = dead_thresholds(quantizer, images.shape[0], _DEAD_FRACTION)
            health = codebook_health(quantizer, quantized.hits, thresholds)
            metrics = {
                "psnr_db": _psnr(reconstruction_error),
                "foreground_psnr_db": _psnr(foreground_error if int(pixels) else reconstruction_error),
                "perplexity": perplexity_per_scale(quantized.hits).mean(),
                "codebook_usage": torch.tensor(sum(health.usage_percent) / len(health.usage_percent)),
            }
        losses = {
            "reconstruction": reconstruction_error,
            "quantizer": quantized.loss.float(),
            "foreground": foreground_error,
        }
        device = reconstruction_error.device
        return {**losses, **{k: v.detach().float().to(device) for k, v in metrics.items()}}


def _psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of an MSE on [-1, 1] (data range 2)."""
    return 10 * torch.log10(4.0 / mse.detach().clamp_min(1e-10))
