"""Understanding tokens: every camera through the shared vision tower and projector, then the language.

Layout of the ``und`` segment: ``[camera 0 patches | camera 1 patches | ... | language (right-padded)]``,
one bidirectional block. Image tokens enter as the projector outputs them, unscaled; language embeddings
are multiplied by ``sqrt(width)`` (Gemma's convention). This is what openpi's pi0, LeRobot's pi0 and the
published F1 compute (transformers' PaliGemma divides image features by ``sqrt(width)`` and LeRobot
multiplies them back), so imported weights see the inputs they were trained with.
"""

from __future__ import annotations

import torch
from torch import nn

from f1.errors import InputError
from f1.model.config import F1Config
from f1.model.language import LanguageEmbedding
from f1.model.vision import ImageProjector, VisionTower

__all__ = ["UnderstandingEncoder"]


class UnderstandingEncoder(nn.Module):
    """Cameras + instruction -> the understanding expert's input tokens.

    Attributes:
        vision: the timm tower (parameter group ``"vision"``).
        projector: ``Linear(D_v -> D_und)``.
        language: token embedding ``(vocab, D_und)``.
    """

    def __init__(self, config: F1Config) -> None:
        super().__init__()
        width = config.trunk.understanding_width
        self.num_cameras = len(config.cameras)
        self.text_length = config.language.max_length
        self.vision = VisionTower(config.vision)
        self.projector = ImageProjector(self.vision.width, width)
        self.language = LanguageEmbedding(config.language.vocab_size, width)

    @property
    def tokens_per_camera(self) -> int:
        return self.vision.num_tokens

    @property
    def length(self) -> int:
        """Slots of the ``und`` segment: ``cameras * patches + max_length``."""
        return self.num_cameras * self.tokens_per_camera + self.text_length

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, 3, H, W)`` float in [0, 1] -> ``(B, C * P, D_und)`` image tokens (unscaled)."""
        if images.ndim != 5 or images.shape[1] != self.num_cameras:
            raise InputError(
                f"images: expected (B, {self.num_cameras}, 3, H, W) for {self.num_cameras} cameras, "
                f"received {tuple(images.shape)}"
            )
        batch = images.shape[0]
        tokens = self.projector(self.vision(images.flatten(0, 1)))
        return tokens.reshape(batch, -1, tokens.shape[-1])

    def forward(
        self, images: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of the ``und`` segment and their valid lengths.

        Args:
            images: ``(B, C, 3, H, W)`` float in [0, 1], cameras in config order.
            text_ids: ``(B, L)`` token ids, right-padded, ``L = max_length``.
            text_lengths: ``(B,)`` valid ids per instruction.

        Returns:
            ``tokens (B, C * P + L, D_und)`` and ``valid_lengths (B,)`` (images always valid).
        """
        if text_ids.shape[1] != self.text_length:
            raise InputError(f"text_ids: expected (B, {self.text_length}), received {tuple(text_ids.shape)}")
        image_tokens = self.encode_images(images)
        text_tokens = self.language(text_ids).to(image_tokens.dtype)
        valid = image_tokens.shape[1] + text_lengths.to(torch.long)
        return torch.cat([image_tokens, text_tokens], dim=1), valid
