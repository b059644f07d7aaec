"""Attention as data: ordered segments, an intra-segment rule each, and a directed "may see" relation.

An :class:`AttentionSpec` is a pure description. It is compiled to masks by :mod:`mot.mask`; nothing here
touches tensors. The token layout is the concatenation of the segments in order; segment ``s`` occupies
positions ``[spec.start(s), spec.start(s) + s.length)`` of the joint sequence.

Intra-segment rules (token ``i`` may attend to token ``j`` of the same segment):

- ``"full"``: always (bidirectional block);
- ``"causal"``: iff ``j <= i``;
- ``Blockwise((n0, n1, ...))``: iff ``block(j) <= block(i)`` where the segment is cut into consecutive blocks
  of the given sizes (bidirectional within a block, causal across blocks: VAR scales, pi0's state/action);
- ``"none"``: never (tokens read only from the segments they may see, like cross-attention queries).

Across segments, token ``i`` of segment ``A`` may attend to every token of segment ``B`` iff ``B`` is in
``sees[A]``. Padding (per-sample valid lengths, right-padded inside each segment) is applied when compiling.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mot.errors import SpecError, check_int, describe

__all__ = ["AttentionSpec", "Blockwise", "IntraRule", "Segment", "SpecError"]


@dataclass(frozen=True)
class Blockwise:
    """Intra-segment rule: bidirectional within consecutive blocks, causal across blocks.

    Args:
        sizes: block sizes in order, e.g. ``(1, 4, 9, 16)`` for the first four VAR scales, ``(1, 8)`` for
            pi0's state token followed by an 8-step action chunk. Their sum must equal the segment length.
    """

    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if isinstance(self.sizes, str | bytes) or not isinstance(self.sizes, Iterable):
            raise SpecError(
                f"Blockwise.sizes: expected a sequence of positive ints, received {describe(self.sizes)}"
            )
        sizes = tuple(self.sizes)
        if not sizes:
            raise SpecError("Blockwise.sizes: expected at least one block, received ()")
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise SpecError(f"Blockwise.sizes: expected positive ints, received {sizes!r}")
        object.__setattr__(self, "sizes", sizes)

    @property
    def total(self) -> int:
        """Number of tokens covered by the blocks."""
        return sum(self.sizes)

    def block_ids(self) -> list[int]:
        """Block index of every token, e.g. ``(1, 2)`` -> ``[0, 1, 1]``."""
        return [b for b, size in enumerate(self.sizes) for _ in range(size)]


IntraRule = Literal["full", "causal", "none"] | Blockwise
_NAMED_RULES = ("full", "causal", "none")


@dataclass(frozen=True)
class Segment:
    """One contiguous run of tokens processed by one expert.

    Args:
        name: unique name of the segment (the key of model inputs and outputs).
        expert: name of the expert whose weights process these tokens.
        length: number of token slots (the padded length when samples have different valid lengths).
        rule: intra-segment rule: ``"full"``, ``"causal"``, ``"none"`` or :class:`Blockwise`.
    """

    name: str
    expert: str
    length: int
    rule: IntraRule = "full"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"Segment.name: expected a non-empty str, received {self.name!r}")
        if not isinstance(self.expert, str) or not self.expert:
            raise SpecError(f"Segment {self.name!r}: expected an expert name, received {self.expert!r}")
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise SpecError(f"Segment {self.name!r}: length must be a positive int, received {self.length!r}")
        if isinstance(self.rule, Blockwise):
            if self.rule.total != self.length:
                raise SpecError(
                    f"Segment {self.name!r}: Blockwise sizes {self.rule.sizes} sum to {self.rule.total}, "
                    f"expected the segment length {self.length}"
                )
        elif self.rule not in _NAMED_RULES:
            raise SpecError(
                f"Segment {self.name!r}: unknown rule {self.rule!r}, expected one of {_NAMED_RULES} "
                "or Blockwise(sizes)"
            )

    def block_ids(self) -> list[int]:
        """Intra-segment block index per token: ``j`` may see ``i`` iff ``block[j] <= block[i]``.

        For ``"none"`` the ids are all zero; whether a segment sees itself at all is :attr:`sees_itself`.
        """
        if isinstance(self.rule, Blockwise):
            return self.rule.block_ids()
        if self.rule == "causal":
            return list(range(self.length))
        return [0] * self.length

    @property
    def sees_itself(self) -> bool:
        """False only for the ``"none"`` rule."""
        return self.rule != "none"


@dataclass(frozen=True)
class AttentionSpec:
    """Ordered segments plus the directed relation "segment A may see every token of segment B".

    Args:
        segments: the segments in sequence order.
        sees: ``{A: [B, ...]}``; segments absent from the mapping see only themselves (via their rule).
            A segment listing itself is an error (its own visibility is its rule).

    Example (F1's understanding -> generation -> action):

    >>> spec = AttentionSpec(
    ...     segments=[Segment("und", "und", 20), Segment("gen", "gen", 30, Blockwise((1, 4, 9, 16))),
    ...               Segment("act", "act", 9, Blockwise((1, 8)))],
    ...     sees={"gen": ["und"], "act": ["und", "gen"]})
    >>> spec.total_length
    59
    """

    segments: tuple[Segment, ...]
    sees: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.segments, Segment | str | bytes) or not isinstance(self.segments, Iterable):
            raise SpecError(
                "AttentionSpec.segments: expected a sequence of Segment objects, received "
                f"{describe(self.segments)}"
            )
        if not isinstance(self.sees, Mapping):
            raise SpecError(
                f"AttentionSpec.sees: expected a mapping {{segment: [segments]}}, received "
                f"{describe(self.sees)}"
            )
        segments = tuple(self.segments)
        if not segments:
            raise SpecError("AttentionSpec.segments: expected at least one Segment, received none")
        for seg in segments:
            if not isinstance(seg, Segment):
                raise SpecError(f"AttentionSpec.segments: expected Segment objects, received {seg!r}")
        names = [s.name for s in segments]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SpecError(f"AttentionSpec.segments: duplicate segment names {duplicates}")
        sees: dict[str, tuple[str, ...]] = {}
        for viewer, targets in dict(self.sees).items():
            if viewer not in names:
                raise SpecError(f"AttentionSpec.sees: unknown segment {viewer!r}, known segments {names}")
            if isinstance(targets, str | bytes) or not isinstance(targets, Iterable):
                raise SpecError(
                    f"AttentionSpec.sees[{viewer!r}]: expected a list of segment names, received "
                    f"{describe(targets)}"
                )
            targets = tuple(targets)
            for target in targets:
                if target not in names:
                    raise SpecError(
                        f"AttentionSpec.sees[{viewer!r}]: unknown segment {target!r}, known segments {names}"
                    )
                if target == viewer:
                    raise SpecError(
                        f"AttentionSpec.sees[{viewer!r}]: a segment sees itself through its rule, "
                        "do not list it in its own sees"
                    )
            sees[viewer] = tuple(dict.fromkeys(targets))
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "sees", _FrozenSees(sees))
        for seg in segments:
            if not seg.sees_itself and not sees.get(seg.name):
                raise SpecError(
                    f"Segment {seg.name!r} has rule 'none' and sees no other segment: "
                    "its query rows would see no key"
                )

    # --- layout ---------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Segment names in sequence order."""
        return tuple(s.name for s in self.segments)

    @property
    def experts(self) -> tuple[str, ...]:
        """Distinct expert names in order of first use."""
        return tuple(dict.fromkeys(s.expert for s in self.segments))

    @property
    def total_length(self) -> int:
        """Number of token slots in the joint sequence."""
        return sum(s.length for s in self.segments)

    def segment(self, name: str) -> Segment:
        """The segment called ``name`` (raises :class:`SpecError` naming the known ones)."""
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise SpecError(f"unknown segment {name!r}, known segments {list(self.names)}")

    def index(self, name: str) -> int:
        """Position of segment ``name`` in :attr:`segments`."""
        return self.names.index(self.segment(name).name)

    def start(self, name: str) -> int:
        """Offset of the first token of segment ``name`` in the joint sequence."""
        offset = 0
        for seg in self.segments:
            if seg.name == name:
                return offset
            offset += seg.length
        raise SpecError(f"unknown segment {name!r}, known segments {list(self.names)}")

    def may_see(self, viewer: str, target: str) -> bool:
        """Whether tokens of ``viewer`` may attend to tokens of a different segment ``target``."""
        if viewer not in self.sees:
            self.segment(viewer)  # raises on an unknown name
            self.segment(target)
            return False
        if target in self.sees[viewer]:
            return True
        self.segment(target)
        return False

    # --- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable form (inverse of :meth:`from_dict`)."""
        return {
            "segments": [
                {
                    "name": s.name,
                    "expert": s.expert,
                    "length": s.length,
                    "rule": {"blockwise": list(s.rule.sizes)} if isinstance(s.rule, Blockwise) else s.rule,
                }
                for s in self.segments
            ],
            "sees": {viewer: list(targets) for viewer, targets in self.sees.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttentionSpec:
        """Build from :meth:`to_dict` output; unknown or missing keys and wrong types raise "
        ":class:`SpecError`."""
        if not isinstance(data, Mapping):
            raise SpecError(f"AttentionSpec.from_dict: data: expected a mapping, received {describe(data)}")
        unknown = sorted(map(repr, set(data) - {"segments", "sees"}))
        if unknown:
            raise SpecError(
                f"AttentionSpec.from_dict: unknown keys [{', '.join(unknown)}], expected 'segments', 'sees'"
            )
        if "segments" not in data:
            raise SpecError("AttentionSpec.from_dict: missing key 'segments' (a list of segment dicts)")
        entries = data["segments"]
        if isinstance(entries, Mapping | str | bytes) or not isinstance(entries, Iterable):
            raise SpecError(
                "AttentionSpec.from_dict: segments: expected a list of segment dicts, received "
                f"{describe(entries)}"
            )
        segments = []
        for i, entry in enumerate(entries):
            where = f"AttentionSpec.from_dict: segments[{i}]"
            if not isinstance(entry, Mapping):
                raise SpecError(f"{where}: expected a segment dict, received {describe(entry)}")
            extra = sorted(map(repr, set(entry) - {"name", "expert", "length", "rule"}))
            if extra:
                raise SpecError(
                    f"{where}: unknown segment keys [{', '.join(extra)}], "
                    "expected 'name', 'expert', 'length', 'rule'"
                )
            missing = [key for key in ("name", "expert", "length") if key not in entry]
            if missing:
                raise SpecError(f"{where}: missing keys {missing}, required 'name', 'expert', 'length'")
            rule = entry.get("rule", "full")
            if isinstance(rule, Mapping):
                if set(rule) != {"blockwise"}:
                    raise SpecError(
                        f"{where}: expected rule {{'blockwise': sizes}} or a name, received {rule}"
                    )
                rule = Blockwise(rule["blockwise"])
            segments.append(Segment(entry["name"], entry["expert"], entry["length"], rule))
        return cls(segments=tuple(segments), sees=data.get("sees", {}))

    # --- ready-made specs -----------------------------------------------------------------------------
    @staticmethod
    def causal_lm(length: int, expert: str = "lm", name: str = "text") -> AttentionSpec:
        """A plain causal language model: one causal segment."""
        check_int("AttentionSpec.causal_lm: length", length)
        return AttentionSpec(segments=(Segment(name, expert, length, "causal"),))

    @staticmethod
    def pi0(
        prefix_length: int, chunk: int, prefix_expert: str = "vlm", suffix_expert: str = "act"
    ) -> AttentionSpec:
        """pi0's layout: a bidirectional prefix, then [state | action chunk] that sees the prefix."""
        check_int("AttentionSpec.pi0: prefix_length", prefix_length)
        check_int("AttentionSpec.pi0: chunk", chunk)
        return AttentionSpec(
            segments=(
                Segment("prefix", prefix_expert, prefix_length, "full"),
                Segment("suffix", suffix_expert, 1 + chunk, Blockwise((1, chunk))),
            ),
            sees={"suffix": ("prefix",)},
        )

    @staticmethod
    def next_scale(condition_length: int, scale_sizes: Sequence[int], expert: str = "gen") -> AttentionSpec:
        """VAR's block-causal layout: condition tokens, then one block per scale that sees the condition."""
        check_int("AttentionSpec.next_scale: condition_length", condition_length)
        if isinstance(scale_sizes, str | bytes) or not isinstance(scale_sizes, Iterable):
            raise SpecError(
                "AttentionSpec.next_scale: scale_sizes: expected a sequence of positive ints, "
                f"received {describe(scale_sizes)}"
            )
        sizes = tuple(scale_sizes)
        for size in sizes:
            check_int(f"AttentionSpec.next_scale: scale_sizes {sizes}", size)
        if not sizes:
            raise SpecError("AttentionSpec.next_scale: scale_sizes: expected at least one scale, received ()")
        return AttentionSpec(
            segments=(
                Segment("cond", expert, condition_length, "full"),
                Segment("scales", expert, sum(sizes), Blockwise(sizes)),
            ),
            sees={"scales": ("cond",)},
        )


class _FrozenSees(Mapping[str, tuple[str, ...]]):
    """Hashable, read-only, picklable ``sees`` mapping: specs compare by value and serve as cache keys."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, tuple[str, ...]]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and self._items == dict(other.items())

    def __repr__(self) -> str:
        return repr(self._items)

    def __reduce__(self) -> tuple[type, tuple[dict[str, tuple[str, ...]]]]:
        return (_FrozenSees, (self._items,))

    def __setitem__(self, key: str, value: object) -> None:
        raise TypeError("AttentionSpec.sees is read-only; build a new AttentionSpec instead")
