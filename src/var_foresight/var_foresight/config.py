"""Typed configuration of the VQ-VAE tokenizer, its presets, and (de)serialisation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from var_foresight.scales import VAR_SCALES_256, ScaleSchedule, phi_table

CodebookLookup = Literal["direct", "vector_quantize"]


@dataclass(frozen=True)
class VQVAEConfig:
    """Shape of a VAR-architecture VQ-VAE and its multi-scale residual quantizer.

    The defaults are the released ``vae_ch160v4096z32`` tokenizer (256 px images, 10 scales). Images of
    ``(H, W)`` pixels give latents of ``(H / 2**(len(ch_mult)-1), W / ...)``, which must equal the last scale.
    """

    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 32
    vocab_size: int = 4096
    in_channels: int = 3
    dropout: float = 0.0
    norm_groups: int = 32
    scales: tuple[tuple[int, int], ...] = field(default=ScaleSchedule.from_sides(VAR_SCALES_256).sizes)
    num_phi: int = 4
    phi_ratio: float = 0.5
    beta: float = 0.25
    lookup: CodebookLookup = "direct"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "scales", ScaleSchedule.from_sides(self.scales).sizes)
        for name in (
            "ch",
            "num_res_blocks",
            "z_channels",
            "vocab_size",
            "in_channels",
            "norm_groups",
            "num_phi",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if len(self.ch_mult) == 0 or any(m < 1 for m in self.ch_mult):
            raise ValueError(f"ch_mult: expected a non-empty tuple of positive ints, got {self.ch_mult}")
        for width in {self.ch * m for m in self.ch_mult}:
            if width % self.norm_groups:
                raise ValueError(
                    f"ch * ch_mult: every level width must be divisible by norm_groups={self.norm_groups}, "
                    f"got width {width}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), got {self.dropout}")
        if not 0.0 <= self.phi_ratio <= 1.0:
            raise ValueError(f"phi_ratio: expected a value in [0, 1], got {self.phi_ratio}")
        if self.beta < 0:
            raise ValueError(f"beta: expected >= 0, got {self.beta}")
        if self.lookup not in ("direct", "vector_quantize"):
            raise ValueError(f"lookup: expected 'direct' or 'vector_quantize', got {self.lookup!r}")

    @property
    def schedule(self) -> ScaleSchedule:
        return ScaleSchedule(self.scales)

    @property
    def downsample(self) -> int:
        """Pixels per latent cell along each side."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` in pixels of the images whose latent matches the last scale."""
        h, w = self.scales[-1]
        return h * self.downsample, w * self.downsample

    @property
    def phi_table(self) -> tuple[int, ...]:
        return phi_table(len(self.scales), self.num_phi)

    def replace(self, **changes: Any) -> VQVAEConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ch_mult"] = list(self.ch_mult)
        out["scales"] = [list(s) for s in self.scales]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VQVAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise KeyError(f"VQVAEConfig: unknown key(s) {unknown}; expected some of {sorted(known)}")
        values = dict(data)
        if "ch_mult" in values:
            values["ch_mult"] = tuple(values["ch_mult"])
        if "scales" in values:
            values["scales"] = tuple(tuple(s) if isinstance(s, list | tuple) else s for s in values["scales"])
        return cls(**values)

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load_json(cls, path: str | Path) -> VQVAEConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def released_vqvae_config() -> VQVAEConfig:
    """The released ``vae_ch160v4096z32`` tokenizer that F1 uses (108.9M parameters, 256 px, 10 scales)."""
    return VQVAEConfig()


def tiny_vqvae_config() -> VQVAEConfig:
    """A CPU-sized tokenizer with the released key layout: 32 px images, 16 x 16 latent, the 10 VAR scales."""
    return VQVAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, vocab_size=512)


VQVAE_PRESETS = {"released": released_vqvae_config, "tiny": tiny_vqvae_config}


def vqvae_config(name: str) -> VQVAEConfig:
    """A preset by name: ``"released"`` or ``"tiny"``."""
    if name not in VQVAE_PRESETS:
        raise KeyError(f"preset: unknown VQ-VAE preset {name!r}; expected one of {sorted(VQVAE_PRESETS)}")
    return VQVAE_PRESETS[name]()
