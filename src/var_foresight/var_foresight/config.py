"""Typed configuration of the VQ-VAE tokenizer, its presets, and (de)serialisation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from var_foresight.errors import CheckpointError
from var_foresight.scales import VAR_SCALES_256, ScaleSchedule, phi_table
from var_foresight.validation import check_int, check_number, type_name

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
        if isinstance(self.ch_mult, str | bytes) or not isinstance(self.ch_mult, tuple | list):
            raise TypeError(f"ch_mult: expected a tuple of positive ints, got {type_name(self.ch_mult)}")
        if len(self.ch_mult) == 0:
            raise ValueError("ch_mult: expected a non-empty tuple of positive ints, got ()")
        for i, m in enumerate(self.ch_mult):
            check_int(f"ch_mult[{i}]", m, 1)
        object.__setattr__(self, "ch_mult", tuple(self.ch_mult))
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
            check_int(name, getattr(self, name), 1)
        for width in {self.ch * m for m in self.ch_mult}:
            if width % self.norm_groups:
                raise ValueError(
                    f"ch * ch_mult: every level width must be divisible by norm_groups={self.norm_groups}, "
                    f"got width {width}"
                )
        check_number("dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_number("phi_ratio", self.phi_ratio, 0.0, 1.0)
        check_number("beta", self.beta, 0.0)
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
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise KeyError(
                f"VQVAEConfig: unknown key(s) {unknown}; expected some of {sorted(self.to_dict())}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ch_mult"] = list(self.ch_mult)
        out["scales"] = [list(s) for s in self.scales]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VQVAEConfig:
        """The inverse of `to_dict`: every key is required (a partial dict would silently take the released
        preset's values for the rest; build those with ``VQVAEConfig(**changes)``)."""
        values = checked_fields(cls, data)
        values["ch_mult"] = (
            tuple(values["ch_mult"]) if isinstance(values["ch_mult"], list) else values["ch_mult"]
        )
        scales = values["scales"]
        if isinstance(scales, list | tuple):
            values["scales"] = tuple(tuple(s) if isinstance(s, list) else s for s in scales)
        return cls(**values)

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load_json(cls, path: str | Path) -> VQVAEConfig:
        """Raises `CheckpointError` naming the file when it is not a JSON `to_dict` of a config."""
        data = read_config_json(path, cls.__name__)
        try:
            return cls.from_dict(data)
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: {err.args[0] if err.args else err}") from err


def checked_fields(cls: type, data: Any) -> dict[str, Any]:
    """``data`` as keyword arguments of the dataclass ``cls``: a mapping with exactly its fields."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__}: expected a mapping of field names to values, got {type_name(data)}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in set(data) - set(known))
    if unknown:
        raise KeyError(f"{cls.__name__}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    missing = [k for k in known if k not in data]
    if missing:
        raise KeyError(f"{cls.__name__}: missing key(s) {missing}; a to_dict() holds all of {known}")
    return dict(data)


def read_config_json(path: str | Path, kind: str) -> dict[str, Any]:
    """The JSON object in ``path``; `CheckpointError` naming the file if it is not one."""
    if not isinstance(path, str | Path):
        raise TypeError(f"path: expected a str or Path, got {type_name(path)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no {kind} config file at {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a JSON {kind} config ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object of {kind} fields, got {type_name(data)}")
    return data


def released_vqvae_config() -> VQVAEConfig:
    """The released ``vae_ch160v4096z32`` tokenizer that F1 uses (108.9M parameters, 256 px, 10 scales)."""
    return VQVAEConfig()


def tiny_vqvae_config() -> VQVAEConfig:
    """A CPU-sized tokenizer with the released key layout: 32 px images, 16 x 16 latent, the 10 VAR scales."""
    return VQVAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, vocab_size=512)


VQVAE_PRESETS = {"released": released_vqvae_config, "tiny": tiny_vqvae_config}


def vqvae_config(name: str) -> VQVAEConfig:
    """A preset by name: ``"released"`` or ``"tiny"``."""
    if not isinstance(name, str) or name not in VQVAE_PRESETS:
        raise KeyError(f"preset: unknown VQ-VAE preset {name!r}; expected one of {sorted(VQVAE_PRESETS)}")
    return VQVAE_PRESETS[name]()
