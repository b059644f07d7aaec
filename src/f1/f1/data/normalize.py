"""Feature normalization from dataset statistics: a plain object of tensors and modes.

Every mode is the affine map ``(x - center) / scale``, so normalize and unnormalize are one code path:

- ``mean_std``: center = mean, scale = std;
- ``min_max``: [min, max] -> [-1, 1];
- ``quantile``: [q01, q99] -> [-1, 1] (pi0 / openpi style; robust to outliers, values outside map beyond ±1).

Dimensions whose scale is below ``eps`` (constant in the data) get scale 1, so they map to 0 and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from safetensors.torch import load_file, save_file

NormMode = Literal["mean_std", "min_max", "quantile"]
NORM_MODES: tuple[str, ...] = get_args(NormMode)
_MODE_STATS = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "quantile": ("q01", "q99")}


def _affine(mode: str, stats: Mapping[str, Any], eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = (torch.as_tensor(np.asarray(stats[k]), dtype=torch.float32) for k in _MODE_STATS[mode])
    if mode == "mean_std":
        center, scale = a, b
    else:
        center, scale = (a + b) / 2, (b - a) / 2
    return center, torch.where(scale.abs() < eps, torch.ones_like(scale), scale)


class Normalizer:
    """Normalizes and unnormalizes named features (``observation.state``, ``action``, cameras ...).

    Args:
        centers: feature name -> tensor broadcastable against the feature's last dims
            (D,) for vectors, (3, 1, 1) for (..., 3, H, W) images.
        scales: feature name -> tensor of the same shape as its center (non-zero).
        modes: feature name -> the mode the tensors came from (kept for the record and for saving).
    """

    def __init__(
        self,
        centers: Mapping[str, torch.Tensor],
        scales: Mapping[str, torch.Tensor],
        modes: Mapping[str, str],
    ) -> None:
        if set(centers) != set(scales) or set(centers) != set(modes):
            raise ValueError(
                f"centers/scales/modes: expected the same keys, got {sorted(centers)}, {sorted(scales)}, "
                f"{sorted(modes)}"
            )
        for key in centers:
            if modes[key] not in NORM_MODES:
                raise ValueError(f"modes[{key!r}]: expected one of {NORM_MODES}, got {modes[key]!r}")
            if centers[key].shape != scales[key].shape:
                raise ValueError(
                    f"scales[{key!r}]: expected shape {tuple(centers[key].shape)}, "
                    f"got {tuple(scales[key].shape)}"
                )
            if not torch.all(scales[key] != 0):
                raise ValueError(f"scales[{key!r}]: must be non-zero")
        self.centers = {k: v.float() for k, v in centers.items()}
        self.scales = {k: v.float() for k, v in scales.items()}
        self.modes = dict(modes)

    @classmethod
    def from_stats(
        cls, stats: Mapping[str, Mapping[str, Any]], modes: Mapping[str, NormMode], eps: float = 1e-8
    ) -> Normalizer:
        """Build from LeRobot statistics (``dataset.stats``), one mode per feature.

        Args:
            stats: feature -> {"mean", "std", "min", "max", "q01", "q99", ...} arrays.
            modes: feature -> ``"mean_std"``, ``"min_max"`` or ``"quantile"``.
        """
        centers, scales = {}, {}
        for key, mode in modes.items():
            if mode not in NORM_MODES:
                raise ValueError(f"modes[{key!r}]: expected one of {NORM_MODES}, got {mode!r}")
            if key not in stats:
                raise ValueError(f"modes: no statistics for {key!r}; stats has {sorted(stats)}")
            needed = [k for k in _MODE_STATS[mode] if k not in stats[key]]
            if needed:
                raise ValueError(
                    f"stats[{key!r}]: mode {mode!r} needs {list(_MODE_STATS[mode])}, missing {needed} "
                    "(v2.1 datasets have no quantiles: use dataset.compute_stats())"
                )
            centers[key], scales[key] = _affine(mode, stats[key], eps)
        return cls(centers, scales, modes)

    @property
    def keys(self) -> list[str]:
        return list(self.centers)

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """(x - center) / scale, broadcasting over leading dims."""
        center, scale = self._params(key, x)
        return (x - center) / scale

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        center, scale = self._params(key, x)
        return x * scale + center

    def normalize_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``batch`` with every feature this normalizer knows normalized."""
        return {k: self.normalize(k, v) if k in self.centers else v for k, v in batch.items()}

    def unnormalize_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``batch`` with every feature this normalizer knows unnormalized."""
        return {k: self.unnormalize(k, v) if k in self.centers else v for k, v in batch.items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only: ``<key>.center`` and ``<key>.scale``."""
        out = {f"{k}.center": v for k, v in self.centers.items()}
        out.update({f"{k}.scale": v for k, v in self.scales.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form: ``{"modes": {...}, "centers": {k: list}, "scales": {k: list}}``."""
        return {
            "modes": dict(self.modes),
            "centers": {k: v.tolist() for k, v in self.centers.items()},
            "scales": {k: v.tolist() for k, v in self.scales.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalizer:
        """Inverse of :meth:`to_dict`."""
        for part in ("modes", "centers", "scales"):
            if part not in data:
                raise ValueError(f"data: missing {part!r}; expected keys modes, centers, scales")
        return cls(
            {k: torch.tensor(v) for k, v in data["centers"].items()},
            {k: torch.tensor(v) for k, v in data["scales"].items()},
            data["modes"],
        )

    def save(self, path: str | Path) -> None:
        """Write a safetensors file (tensors; the modes go into its string metadata)."""
        metadata = {f"mode.{k}": m for k, m in self.modes.items()}
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
        modes = {k.removeprefix("mode."): m for k, m in metadata.items() if k.startswith("mode.")}
        centers = {k: tensors[f"{k}.center"] for k in modes if f"{k}.center" in tensors}
        scales = {k: tensors[f"{k}.scale"] for k in modes if f"{k}.scale" in tensors}
        if len(centers) != len(modes) or len(scales) != len(modes):
            raise ValueError(f"path: {path} is not a Normalizer file (tensors and modes disagree)")
        return cls(centers, scales, modes)

    def _params(self, key: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if key not in self.centers:
            raise KeyError(f"key: expected one of {self.keys}, got {key!r}")
        center, scale = self.centers[key], self.scales[key]
        try:
            broadcast = torch.broadcast_shapes(x.shape, center.shape)
        except RuntimeError:
            broadcast = None
        if broadcast != x.shape:
            raise ValueError(
                f"x: shape {tuple(x.shape)} does not broadcast with the {key!r} statistics "
                f"of shape {tuple(center.shape)}"
            )
        return center.to(x.device, x.dtype), scale.to(x.device, x.dtype)

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {m} {tuple(self.centers[k].shape)}" for k, m in self.modes.items())
        return f"Normalizer({parts})"
