"""Per-frame tokenizer codes of one camera of a dataset, so a frozen tokenizer encodes each frame once.

F1's history and foresight target pass through a frozen VQ-VAE. Encoding every history and future frame
at every training step repeats the same work for every sample that shares a frame (a frame is the
history of several anchors and the future of another). :class:`FrameCodes` holds the codes of every frame
of a dataset, in the dataset's global frame order; :class:`f1.data.WindowedDataset` given one reads the
history and the future from it instead of decoding and re-encoding frames. The codes are made by the
model that owns the tokenizer (``f1.train.encode_dataset_frames``); this module only stores and checks
them, so ``f1.data`` stays independent of the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

__all__ = ["FrameCodes"]


@dataclass(frozen=True)
class FrameCodes:
    """Tokenizer codes of every frame of one camera.

    Attributes:
        camera: the camera key the frames come from (``"observation.images.<camera>"``).
        latents: ``(N, Cz, h, w)`` float32 quantized latents ``f_hat`` (all scales), N = the dataset's frames.
        indices: ``(N, L)`` int64 token indices of every scale, concatenated coarsest first.
    """

    camera: str
    latents: torch.Tensor
    indices: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.camera, str) or not self.camera:
            raise ValueError(f"camera: expected a camera key, received {self.camera!r}")
        if not isinstance(self.latents, torch.Tensor) or self.latents.ndim != 4:
            shape = tuple(self.latents.shape) if isinstance(self.latents, torch.Tensor) else None
            raise ValueError(f"latents: expected a tensor (N, Cz, h, w), received {shape}")
        if not self.latents.is_floating_point():
            raise ValueError(f"latents: expected floating-point values, received {self.latents.dtype}")
        if not isinstance(self.indices, torch.Tensor) or self.indices.ndim != 2:
            shape = tuple(self.indices.shape) if isinstance(self.indices, torch.Tensor) else None
            raise ValueError(f"indices: expected a tensor (N, L), received {shape}")
        if self.indices.dtype != torch.int64:
            raise ValueError(f"indices: expected int64, received {self.indices.dtype}")
        if self.indices.shape[0] != self.latents.shape[0]:
            raise ValueError(
                f"indices: expected one row per frame ({self.latents.shape[0]} latents), "
                f"received {self.indices.shape[0]}"
            )
        if not bool(torch.isfinite(self.latents).all()):
            raise ValueError("latents: expected finite values, received NaN or inf")

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[0])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the codes to a safetensors file (atomically: a temporary file renamed into place)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        tensors = {"latents": self.latents.contiguous(), "indices": self.indices.contiguous()}
        save_file(tensors, str(partial), metadata={"format": "f1.frame_codes", "camera": self.camera})
        os.replace(partial, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FrameCodes:
        """Read codes written by :meth:`save` (tensors only; a foreign or truncated file is refused)."""
        source = Path(path)
        if not source.is_file():
            raise ValueError(f"path: no frame-codes file at {source}")
        try:
            with safe_open(str(source), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(source))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"path: {source} is not a readable safetensors file ({err})") from None
        if metadata.get("format") != "f1.frame_codes" or set(tensors) != {"latents", "indices"}:
            raise ValueError(
                f"path: {source} holds no frame codes (format {metadata.get('format')!r}, "
                f"tensors {sorted(tensors)})"
            )
        return cls(camera=metadata.get("camera", ""), latents=tensors["latents"], indices=tensors["indices"])
