"""One training step of the VQ-VAE tokenizer: reconstruction + VAR's quantizer loss, codebook health, and
periodic dead-code restarts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from var_foresight.codebook_health import CodebookHealth, codebook_health, dead_thresholds, restart_dead_codes
from var_foresight.validation import check_generator, check_int, check_number, type_name
from var_foresight.vqvae import VQVAE


@dataclass(frozen=True)
class TokenizerTrainingConfig:
    """reconstruction: pixel loss on images in [-1, 1]; quantizer_weight multiplies VAR's quantizer loss;
    a restart of dead codes runs every ``restart_every`` steps (0 disables it) using codes whose hit EMA is
    below ``dead_fraction`` of uniform use at every scale."""

    reconstruction: Literal["mse", "l1"] = "mse"
    quantizer_weight: float = 1.0
    restart_every: int = 10
    dead_fraction: float = 0.08

    def __post_init__(self) -> None:
        if self.reconstruction not in ("mse", "l1"):
            raise ValueError(f"reconstruction: expected 'mse' or 'l1', got {self.reconstruction!r}")
        check_number("quantizer_weight", self.quantizer_weight, 0.0)
        check_int("restart_every", self.restart_every, 0)
        check_number("dead_fraction", self.dead_fraction, 0.0, 1.0, low_open=True)


@dataclass(frozen=True)
class TokenizerStepReport:
    """Losses of one step (floats) and the codebook health after it; ``restarted`` codes this step."""

    step: int
    loss: float
    reconstruction_loss: float
    quantizer_loss: float
    health: CodebookHealth
    restarted: int


class TokenizerTrainer:
    """Owns the step counter and the restart generator; the model and optimizer are the caller's."""

    def __init__(
        self,
        vqvae: VQVAE,
        optimizer: torch.optim.Optimizer,
        config: TokenizerTrainingConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(vqvae, VQVAE):
            raise TypeError(f"vqvae: expected a VQVAE, got {type_name(vqvae)}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {type_name(optimizer)}")
        if config is not None and not isinstance(config, TokenizerTrainingConfig):
            raise TypeError(f"config: expected a TokenizerTrainingConfig or None, got {type_name(config)}")
        check_generator("generator", generator)
        self.vqvae, self.optimizer = vqvae, optimizer
        self.config = config or TokenizerTrainingConfig()
        self.generator = generator or torch.Generator().manual_seed(0)
        self.steps = 0

    def step(self, images: torch.Tensor) -> TokenizerStepReport:
        """One optimisation step on ``images`` ``(B, 3, H, W)`` in [-1, 1] (checked, see
        `VQVAE.check_images`, before the model or the optimizer change)."""
        self.vqvae.check_images(images)
        self.vqvae.train()
        reconstruction, quantized = self.vqvae(images)
        if self.config.reconstruction == "mse":
            rec_loss = F.mse_loss(reconstruction, images)
        else:
            rec_loss = F.l1_loss(reconstruction, images)
        loss = rec_loss + self.config.quantizer_weight * quantized.loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1

        quantizer = self.vqvae.quantize
        thresholds = dead_thresholds(quantizer, images.shape[0], self.config.dead_fraction)
        restarted = 0
        if self.config.restart_every and self.steps % self.config.restart_every == 0:
            restarted = restart_dead_codes(
                quantizer, quantized.residuals, thresholds, self.generator, self.optimizer
            )
        return TokenizerStepReport(
            step=self.steps,
            loss=float(loss.detach()),
            reconstruction_loss=float(rec_loss.detach()),
            quantizer_loss=float(quantized.loss.detach()),
            health=codebook_health(quantizer, quantized.hits, thresholds),
            restarted=restarted,
        )
