"""Key/value cache of the leading token slots of a spec, for running later segments against them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from mot.errors import ArgumentTypeError, SpecError, describe
from mot.layout import as_device, check_bool_tensor, check_spec, check_valid_lengths
from mot.spec import AttentionSpec

__all__ = ["KVCache"]


@dataclass
class KVCache:
    """Rotated keys and values of token slots ``[0, length)`` of ``spec``, for every layer.

    Build one with :meth:`mot.MixtureOfTransformers.prefill` (or start from ``KVCache(spec)`` and call
    ``extend(..., append=True)``). ``extend(..., append=False)`` reads it without changing it (e.g. the
    action expert's ODE steps); ``append=True`` adds the new slots (e.g. one VAR scale at a time).

    Attributes:
        spec: the spec whose leading slots are cached.
        keys: per layer ``(B, Hkv, length, D)`` rotated keys; an empty list while nothing is cached.
        values: per layer ``(B, Hkv, length, D)``.
        valid: ``(B, length)`` bool validity of the cached slots.
        valid_lengths: the per-sample valid lengths of the segments seen so far, ``{segment: (B,)}``.
    """

    spec: AttentionSpec
    keys: list[Tensor] = field(default_factory=list)
    values: list[Tensor] = field(default_factory=list)
    valid: Tensor | None = None
    valid_lengths: dict[str, Tensor] = field(default_factory=dict)
    # positions, rotary tables and masks of read-only calls against this state (cleared when it changes)
    _derived: dict[object, object] = field(default_factory=dict, init=False, repr=False, compare=False)
    # validity, rotary tables and mask of the whole spec for the cached valid lengths (kept across appends;
    # keyed by those lengths' tensors, which the cache holds)
    _padded_layout: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Only the cache's own consistency; whether it fits a model is checked by the model's entries.
        check_spec(self.spec, "KVCache.spec")
        for name in ("keys", "values"):
            tensors = getattr(self, name)
            if not isinstance(tensors, list) or not all(isinstance(t, Tensor) for t in tensors):
                raise ArgumentTypeError(
                    f"KVCache.{name}: expected a list of (B, Hkv, length, D) tensors, received "
                    f"{describe(tensors)}"
                )
        if len(self.keys) != len(self.values):
            raise SpecError(
                f"KVCache.values: expected one tensor per layer of keys ({len(self.keys)}), "
                f"received {len(self.values)}"
            )
        self.valid_lengths = check_valid_lengths(self.spec, self.valid_lengths)
        if self.valid is None:
            if self.keys or self.valid_lengths:
                raise SpecError(
                    "KVCache.valid: expected a (B, length) bool tensor with keys/values, received None"
                )
            return
        check_bool_tensor("KVCache.valid", self.valid, 2, "(B, length)")
        batch, length = self.valid.shape
        if batch < 1 or not 1 <= length <= self.spec.total_length:
            raise SpecError(
                f"KVCache.valid: expected shape (B >= 1, 1..{self.spec.total_length}), received "
                f"{(batch, length)}"
            )
        if not self.keys:
            raise SpecError("KVCache.keys: expected one (B, Hkv, length, D) tensor per layer, received none")
        for layer, (k, v) in enumerate(zip(self.keys, self.values)):
            if k.ndim != 4 or k.shape[0] != batch or k.shape[2] != length or v.shape != k.shape:
                raise SpecError(
                    f"KVCache.keys[{layer}]/values[{layer}]: expected equal shapes ({batch}, Hkv, "
                    f"{length}, D) "
                    f"(batch and length of valid), received {tuple(k.shape)} and {tuple(v.shape)}"
                )

    @property
    def length(self) -> int:
        """Number of cached token slots."""
        return 0 if self.valid is None else int(self.valid.shape[1])

    @property
    def batch_size(self) -> int | None:
        """B, or None while empty."""
        return None if self.valid is None else int(self.valid.shape[0])

    @property
    def n_valid(self) -> Tensor | None:
        """``(B,)`` number of valid cached tokens: the position offset of what comes next."""
        return None if self.valid is None else self.valid.sum(dim=1)

    def segments(self) -> dict[str, int]:
        """``{segment: number of its slots cached}`` for the segments (partly) in the cache."""
        done = {}
        for seg in self.spec.segments:
            cached = min(max(self.length - self.spec.start(seg.name), 0), seg.length)
            if cached:
                done[seg.name] = cached
        return done

    def clone(self) -> KVCache:
        """An independent copy (tensors are shared until one side appends, which never mutates them)."""
        return KVCache(self.spec, list(self.keys), list(self.values), self.valid, dict(self.valid_lengths))

    def _store(self, keys: list[Tensor], values: list[Tensor], valid: Tensor, valid_lengths) -> None:
        self.keys, self.values, self.valid = keys, values, valid
        self.valid_lengths = dict(valid_lengths)
        self._derived = {}

    def memory_bytes(self) -> int:
        """Bytes held by the cached keys and values."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def to(self, device: torch.device | str) -> KVCache:
        """A copy on ``device``."""
        device = as_device(device)
        return KVCache(
            self.spec,
            [k.to(device) for k in self.keys],
            [v.to(device) for v in self.values],
            None if self.valid is None else self.valid.to(device),
            {n: t.to(device) for n, t in self.valid_lengths.items()},
        )
