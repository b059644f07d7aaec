"""Embodiments: what a robot's state and action vectors mean, how they are normalized, and the registry.

An :class:`Embodiment` is pure data (serialisable with the policy's config). The policy keeps one
:class:`EmbodimentRegistry` and, per registered embodiment, one
:class:`~f1.model.adapters.EmbodimentAdapter` (its own state/action projections around the shared trunk).
Normalization happens here, in torch, so that the policy owns it (LeRobot style): callers hand raw state
and actions in, and get raw actions out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch

from f1.checks import finite_float, float_tuple, one_of, positive_int, reject_unknown_keys
from f1.errors import ConfigError, InputError, UnknownEmbodimentError

__all__ = [
    "NORMALIZATION_MODES",
    "Embodiment",
    "EmbodimentRegistry",
    "FeatureStats",
    "NormalizationMode",
    "padded_embodiment",
]

NormalizationMode = Literal["mean_std", "min_max", "quantile", "identity"]
NORMALIZATION_MODES: tuple[str, ...] = ("mean_std", "min_max", "quantile", "identity")
_EPS = 1e-8
# the statistics each mode reads (LeRobot's stats.json names)
_MODE_STATS: dict[str, tuple[str, ...]] = {
    "mean_std": ("mean", "std"),
    "min_max": ("min", "max"),
    "quantile": ("q01", "q99"),
    "identity": (),
}


@dataclass(frozen=True)
class FeatureStats:
    """Per-dimension statistics of one feature (a state or action vector), as in LeRobot's ``stats.json``.

    Attributes:
        mean, std: used by ``"mean_std"`` normalization, ``(x - mean) / (std + 1e-8)``.
        min, max: used by ``"min_max"`` normalization, ``[min, max] -> [-1, 1]``.
        q01, q99: the 1st and 99th percentiles, used by ``"quantile"`` normalization (pi0/openpi's),
            ``[q01, q99] -> [-1, 1]``: robust to outliers, values beyond them map beyond +-1.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    min: tuple[float, ...] | None = None
    max: tuple[float, ...] | None = None
    q01: tuple[float, ...] | None = None
    q99: tuple[float, ...] | None = None

    def check(self, where: str, dim: int, mode: str) -> FeatureStats:
        """Validated copy: every given vector has ``dim`` entries; the ones ``mode`` needs are present."""
        values: dict[str, tuple[float, ...] | None] = {}
        for f in fields(self):
            raw = getattr(self, f.name)
            values[f.name] = None if raw is None else float_tuple(f"{where}.{f.name}", raw, dim)
        missing = [k for k in _MODE_STATS[mode] if values[k] is None]
        if missing:
            raise ConfigError(
                f"{where}: normalization {mode!r} needs statistics {missing}, received none"
                + (
                    " (v2.1 datasets store no quantiles: recompute them, dataset.compute_stats())"
                    if mode == "quantile"
                    else ""
                )
            )
        if values["std"] is not None and min(values["std"]) < 0:
            raise ConfigError(f"{where}.std: expected non-negative values, received {values['std']}")
        for low, high in (("min", "max"), ("q01", "q99")):
            if values[low] is not None and values[high] is not None:
                bad = [i for i, (lo, hi) in enumerate(zip(values[low], values[high])) if lo > hi]
                if bad:
                    raise ConfigError(f"{where}: {low} > {high} at dimensions {bad}")
        return FeatureStats(**values)

    def to_dict(self) -> dict[str, list[float] | None]:
        return {
            f.name: None if getattr(self, f.name) is None else list(getattr(self, f.name))
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "FeatureStats") -> FeatureStats:
        """From ``{"mean": [...], "std": [...], "min": [...], "max": [...], "q01": [...], "q99": [...]}``;
        LeRobot's other keys (``count``, other quantiles) are ignored, so a ``stats.json`` entry can be
        passed as is."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of statistics, received {type(data).__name__}")
        picked = {}
        for f in fields(cls):
            value = data.get(f.name)
            if value is not None:
                value = [float(v) for v in torch.as_tensor(value, dtype=torch.float64).reshape(-1).tolist()]
            picked[f.name] = value
        return cls(**picked)


@dataclass(frozen=True)
class Embodiment:
    """One robot: dimensions and meaning of its state and action vectors, statistics, mask, control rate.

    Attributes:
        name: registry key, e.g. ``"so100"`` or ``"libero_pad32"``.
        state_dim: ``S``, entries of ``observation.state``.
        action_dim: ``A``, entries of one action.
        control_hz: control rate (actions per second).
        state_names, action_names: meaning of each entry (empty: unnamed); lengths ``S`` and ``A``.
        action_mask: ``A`` booleans, True where an action dimension is real (False for zero padding such as
            pi0's pad-to-32); the flow loss counts only True dimensions. Default: all real.
        normalization: ``"mean_std"``, ``"min_max"`` (to [-1, 1]), ``"quantile"`` (1st..99th percentile to
            [-1, 1]) or ``"identity"``. This is the library's one normalization: the model normalizes state
            and actions per embodiment (LeRobot's processor order: raw -> normalize -> model -> unnormalize).
        state_stats, action_stats: the statistics the mode needs (see :class:`FeatureStats`).
    """

    name: str
    state_dim: int
    action_dim: int
    control_hz: float = 10.0
    state_names: tuple[str, ...] = ()
    action_names: tuple[str, ...] = ()
    action_mask: tuple[bool, ...] | None = None
    normalization: NormalizationMode = "identity"
    state_stats: FeatureStats = FeatureStats()
    action_stats: FeatureStats = FeatureStats()

    def __post_init__(self) -> None:
        if (
            not isinstance(self.name, str)
            or not self.name
            or not self.name.replace("_", "").replace("-", "").isalnum()
        ):
            raise ConfigError(
                "Embodiment.name: expected a non-empty name of letters, digits, '_' or '-', "
                f"received {self.name!r}"
            )
        where = f"Embodiment[{self.name!r}]"
        positive_int(f"{where}.state_dim", self.state_dim)
        positive_int(f"{where}.action_dim", self.action_dim)
        finite_float(f"{where}.control_hz", self.control_hz, low=1e-6)
        one_of(f"{where}.normalization", self.normalization, NORMALIZATION_MODES)
        for attr, dim in (("state_names", self.state_dim), ("action_names", self.action_dim)):
            names = tuple(getattr(self, attr))
            if names and len(names) != dim:
                raise ConfigError(f"{where}.{attr}: expected {dim} names or none, received {len(names)}")
            object.__setattr__(self, attr, tuple(str(n) for n in names))
        mask = (True,) * self.action_dim if self.action_mask is None else tuple(self.action_mask)
        if len(mask) != self.action_dim or not all(isinstance(m, bool) for m in mask):
            raise ConfigError(
                f"{where}.action_mask: expected {self.action_dim} booleans, received {self.action_mask!r}"
            )
        if not any(mask):
            raise ConfigError(f"{where}.action_mask: at least one action dimension must be real")
        object.__setattr__(self, "action_mask", mask)
        for attr, dim in (("state_stats", self.state_dim), ("action_stats", self.action_dim)):
            stats = getattr(self, attr)
            if isinstance(stats, Mapping):
                stats = FeatureStats.from_dict(stats, f"{where}.{attr}")
            if not isinstance(stats, FeatureStats):
                raise ConfigError(f"{where}.{attr}: expected FeatureStats, received {type(stats).__name__}")
            object.__setattr__(self, attr, stats.check(f"{where}.{attr}", dim, self.normalization))

    # --- normalization (torch, differentiable, any leading shape) -------------------------------------
    def _affine(self, stats: FeatureStats, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(shift, scale)`` so that ``normalized = (x - shift) / scale``."""
        kw = {"dtype": like.dtype, "device": like.device}
        if self.normalization == "mean_std":
            return torch.tensor(stats.mean, **kw), torch.tensor(stats.std, **kw) + _EPS
        if self.normalization in ("min_max", "quantile"):
            low, high = _MODE_STATS[self.normalization]
            lo, hi = torch.tensor(getattr(stats, low), **kw), torch.tensor(getattr(stats, high), **kw)
            return (lo + hi) / 2, ((hi - lo) / 2).clamp_min(_EPS)
        return torch.zeros((), **kw), torch.ones((), **kw)

    def _check_last_dim(self, argument: str, x: torch.Tensor, dim: int) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InputError(f"{argument}: expected a floating-point tensor, received {_describe(x)}")
        if x.ndim < 1 or x.shape[-1] != dim:
            raise InputError(
                f"{argument}: embodiment {self.name!r} expects (..., {dim}), received {tuple(x.shape)}"
            )

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        """``(..., S)`` raw state -> normalized state."""
        self._check_last_dim("observation.state", state, self.state_dim)
        shift, scale = self._affine(self.state_stats, state)
        return (state - shift) / scale

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        """``(..., A)`` raw actions -> normalized actions (the flow's data space)."""
        self._check_last_dim("action", action, self.action_dim)
        shift, scale = self._affine(self.action_stats, action)
        return (action - shift) / scale

    def unnormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        """``(..., A)`` normalized actions -> raw actions (inverse of :meth:`normalize_action`)."""
        self._check_last_dim("action", action, self.action_dim)
        shift, scale = self._affine(self.action_stats, action)
        return action * scale + shift

    def action_mask_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``(A,)`` bool, True for real action dimensions."""
        return torch.tensor(self.action_mask, dtype=torch.bool, device=device)

    # --- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state_dim": self.state_dim,
            "action_dim": self.action_dim,
            "control_hz": self.control_hz,
            "state_names": list(self.state_names),
            "action_names": list(self.action_names),
            "action_mask": list(self.action_mask or ()),
            "normalization": self.normalization,
            "state_stats": self.state_stats.to_dict(),
            "action_stats": self.action_stats.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Embodiment:
        reject_unknown_keys("Embodiment", data, cls)
        values = dict(data)
        for key in ("state_names", "action_names", "action_mask"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        for key in ("state_stats", "action_stats"):
            if key in values:
                values[key] = FeatureStats.from_dict(values[key], f"Embodiment.{key}")
        return cls(**values)

    @classmethod
    def from_dataset_stats(
        cls,
        name: str,
        stats: Mapping[str, Mapping[str, Any]],
        *,
        control_hz: float,
        normalization: NormalizationMode = "mean_std",
        state_key: str = "observation.state",
        action_key: str = "action",
        **kwargs: Any,
    ) -> Embodiment:
        """Build from LeRobot ``meta/stats.json`` content (``{feature: {"mean": ..., "std": ...}}``)."""
        for key in (state_key, action_key):
            if key not in stats:
                raise ConfigError(f"stats: expected the feature {key!r}, received features {sorted(stats)}")
        state_stats = FeatureStats.from_dict(stats[state_key], f"stats[{state_key!r}]")
        action_stats = FeatureStats.from_dict(stats[action_key], f"stats[{action_key!r}]")
        reference = state_stats.mean or state_stats.min or state_stats.q01
        action_reference = action_stats.mean or action_stats.min or action_stats.q01
        if reference is None or action_reference is None:
            raise ConfigError("stats: expected mean/std, min/max or q01/q99 for the state and the action")
        return cls(
            name=name,
            state_dim=len(reference),
            action_dim=len(action_reference),
            control_hz=control_hz,
            normalization=normalization,
            state_stats=state_stats,
            action_stats=action_stats,
            **kwargs,
        )


def padded_embodiment(
    name: str, state_dim: int, action_dim: int, *, pad_to: int = 32, control_hz: float = 10.0
) -> Embodiment:
    """pi0/F1-style embodiment: state and action zero-padded to ``pad_to`` dims, only the real ones count.

    This is the layout of the published F1 and pi0 checkpoints (32-dim state and action projections).
    """
    if state_dim > pad_to or action_dim > pad_to:
        raise ConfigError(
            f"padded_embodiment: state_dim={state_dim} and action_dim={action_dim} must be <= pad_to={pad_to}"
        )
    return Embodiment(
        name=name,
        state_dim=pad_to,
        action_dim=pad_to,
        control_hz=control_hz,
        action_mask=tuple(i < action_dim for i in range(pad_to)),
    )


class EmbodimentRegistry:
    """Embodiments by name, in registration order. Unknown names raise :class:`UnknownEmbodimentError`."""

    def __init__(self, embodiments: Iterable[Embodiment] = ()) -> None:
        self._by_name: dict[str, Embodiment] = {}
        for embodiment in embodiments:
            self.register(embodiment)

    def register(self, embodiment: Embodiment) -> None:
        """Add ``embodiment``; a name that is already registered raises ``ConfigError``."""
        if not isinstance(embodiment, Embodiment):
            raise ConfigError(f"embodiment: expected an Embodiment, received {type(embodiment).__name__}")
        if embodiment.name in self._by_name:
            raise ConfigError(f"embodiment: {embodiment.name!r} is already registered")
        self._by_name[embodiment.name] = embodiment

    def get(self, name: str) -> Embodiment:
        if not isinstance(name, str) or name not in self._by_name:
            raise UnknownEmbodimentError(name, self.names)
        return self._by_name[name]

    __getitem__ = get

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Embodiment]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def resolve(self, names: str | Sequence[str], batch_size: int) -> list[str]:
        """Per-sample embodiment names from a batch's ``"embodiment"`` entry (a str or a list of B str)."""
        if isinstance(names, str):
            names = [names] * batch_size
        names = list(names)
        if len(names) != batch_size:
            raise InputError(f"embodiment: expected {batch_size} names (batch size), received {len(names)}")
        for name in names:
            self.get(name)
        return names


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor {tuple(x.shape)} {x.dtype}"
    return type(x).__name__
