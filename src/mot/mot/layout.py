"""Token layout of a spec: per-token tables, validity from per-sample lengths, positions, chunk planning.

These are the tensor-side facts about an :class:`~mot.spec.AttentionSpec` that both the mask compiler
(:mod:`mot.mask`) and the model (:mod:`mot.model`) use, so that there is exactly one definition of them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mot.errors import ArgumentTypeError, SpecError, check_int, describe
from mot.spec import AttentionSpec

__all__ = [
    "ChunkPiece",
    "ChunkPlan",
    "TokenTables",
    "ValidLengths",
    "as_device",
    "check_bool_tensor",
    "check_cut",
    "check_spec",
    "check_valid_lengths",
    "lengths_tensor",
    "plan_chunk",
    "positions_from_valid",
    "token_tables",
    "token_valid",
]

ValidLengths = Mapping[str, Tensor | Sequence[int]]
"""Per-segment number of valid (non-padding) tokens per sample: ``{segment: (B,) ints}``.

Valid tokens are the first ``n`` slots of a segment (right padding inside each segment); segments that are
absent are fully valid."""


@dataclass(frozen=True)
class TokenTables:
    """Per-token lookup tables of a spec (all on one device).

    Attributes:
        segment_id: ``(L,)`` long, index of the token's segment.
        block_id: ``(L,)`` long, intra-segment block; ``j`` may see ``i`` of the same segment iff
            ``block_id[j] <= block_id[i]`` and the segment sees itself.
        sees_itself: ``(S,)`` bool per segment (False for rule ``"none"``).
        sees: ``(S, S)`` bool, ``sees[a, b]`` iff segment ``a`` may see segment ``b`` (diagonal False).
    """

    segment_id: Tensor
    block_id: Tensor
    sees_itself: Tensor
    sees: Tensor


@functools.lru_cache(maxsize=128)
def token_tables(spec: AttentionSpec, device: torch.device | str = "cpu") -> TokenTables:
    """The :class:`TokenTables` of ``spec`` on ``device`` (cached per spec and device)."""
    names = spec.names
    segment_id = [i for i, seg in enumerate(spec.segments) for _ in range(seg.length)]
    block_id = [b for seg in spec.segments for b in seg.block_ids()]
    sees = [[spec.may_see(a, b) for b in names] for a in names]
    return TokenTables(
        segment_id=torch.tensor(segment_id, dtype=torch.long, device=device),
        block_id=torch.tensor(block_id, dtype=torch.long, device=device),
        sees_itself=torch.tensor([s.sees_itself for s in spec.segments], dtype=torch.bool, device=device),
        sees=torch.tensor(sees, dtype=torch.bool, device=device),
    )


def check_spec(spec: object, name: str = "spec") -> AttentionSpec:
    """``spec`` if it is an :class:`AttentionSpec`, else :class:`~mot.ArgumentTypeError`."""
    if not isinstance(spec, AttentionSpec):
        raise ArgumentTypeError(f"{name}: expected an AttentionSpec, received {type(spec).__name__}")
    return spec


def as_device(device: object, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device``, else :class:`SpecError` naming the argument."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise ArgumentTypeError(f"{name}: expected a torch.device or str, received {type(device).__name__}")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise SpecError(
            f"{name}: expected a device such as 'cpu' or 'cuda:0', received {device!r}"
        ) from error


def check_valid_lengths(spec: AttentionSpec, valid_lengths: object) -> dict[str, object]:
    """``valid_lengths`` as a dict after checking it is a mapping of the spec's segment names."""
    if valid_lengths is None:
        return {}
    if not isinstance(valid_lengths, Mapping):
        raise SpecError(
            f"valid_lengths: expected a mapping {{segment: (B,) ints}} or None, received "
            f"{describe(valid_lengths)}"
        )
    for name in valid_lengths:
        if not isinstance(name, str) or name not in spec.names:
            raise SpecError(f"valid_lengths: unknown segment {name!r}, known segments {list(spec.names)}")
    return dict(valid_lengths)


def check_bool_tensor(name: str, value: object, ndim: int, shape: str) -> Tensor:
    """``value`` if it is a bool tensor with ``ndim`` dimensions, else an error naming ``name``."""
    if not isinstance(value, Tensor):
        raise ArgumentTypeError(
            f"{name}: expected a bool tensor of shape {shape}, received {type(value).__name__}"
        )
    if value.dtype != torch.bool or value.ndim != ndim:
        raise SpecError(f"{name}: expected a bool tensor of shape {shape}, received {describe(value)}")
    return value


def lengths_tensor(name: str, lengths: object, limit: int, device: torch.device | None) -> Tensor:
    """Checked ``(B,)`` long valid lengths of segment ``name`` (values in ``[0, limit]``)."""
    try:
        values = torch.as_tensor(lengths, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise SpecError(
            f"valid_lengths[{name!r}]: expected (B,) ints, received {describe(lengths)}"
        ) from error
    if values.ndim != 1:
        raise SpecError(f"valid_lengths[{name!r}]: expected shape (B,), received {tuple(values.shape)}")
    if values.dtype.is_floating_point or values.dtype == torch.bool or values.is_complex():
        raise SpecError(f"valid_lengths[{name!r}]: expected integers, received dtype {values.dtype}")
    if values.numel() and (int(values.min()) < 0 or int(values.max()) > limit):
        raise SpecError(
            f"valid_lengths[{name!r}]: expected values in [0, {limit}], received {values.tolist()}"
        )
    return values.long()


def token_valid(
    spec: AttentionSpec,
    valid_lengths: ValidLengths | None,
    batch_size: int,
    end: int | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Validity of every token slot ``[0, end)`` of the joint sequence.

    Args:
        spec: the attention spec.
        valid_lengths: ``{segment: (B,) ints}`` or None (everything valid).
        batch_size: B.
        end: number of leading token slots to return (default: the whole sequence).
        device: device of the result.

    Returns:
        ``(B, end)`` bool, True where the token is real (not padding).
    """
    check_spec(spec)
    device = as_device(device)
    check_int("batch_size", batch_size)
    end = spec.total_length if end is None else check_int("end", end, minimum=0)
    if end > spec.total_length:
        raise SpecError(f"end: expected at most {spec.total_length} (the spec's length), received {end}")
    valid_lengths = check_valid_lengths(spec, valid_lengths)
    columns = []
    for seg in spec.segments:
        slots = torch.arange(seg.length, device=device)
        if seg.name in valid_lengths:
            lengths = lengths_tensor(seg.name, valid_lengths[seg.name], seg.length, device)
            if lengths.shape[0] != batch_size:
                raise SpecError(
                    f"valid_lengths[{seg.name!r}]: expected {batch_size} entries (batch size), "
                    f"received {lengths.shape[0]}"
                )
            columns.append(slots[None, :] < lengths[:, None])
        else:
            columns.append(torch.ones(batch_size, seg.length, dtype=torch.bool, device=device))
    return torch.cat(columns, dim=1)[:, :end]


def positions_from_valid(valid: Tensor, offset: Tensor | int = 0) -> Tensor:
    """Rotary positions in the Gemma/pi0 convention: ``positions = offset + cumsum(valid) - 1``.

    Args:
        valid: ``(B, L)`` bool token validity over the joint sequence (padding slots repeat the position of
            the previous valid token and are never attended to by valid tokens).
        offset: ``(B,)`` or int, number of valid tokens before this run (used by cached extension).

    Returns:
        ``(B, L)`` long positions.
    """
    check_bool_tensor("valid", valid, 2, "(B, L)")
    if isinstance(offset, Tensor):
        if offset.ndim != 1 or offset.shape[0] != valid.shape[0] or offset.dtype.is_floating_point:
            raise SpecError(
                f"offset: expected ({valid.shape[0]},) ints or an int, received {describe(offset)}"
            )
    elif isinstance(offset, bool) or not isinstance(offset, int):
        raise ArgumentTypeError(f"offset: expected an int or a (B,) tensor, received {type(offset).__name__}")
    positions = torch.cumsum(valid.long(), dim=1) - 1
    if isinstance(offset, Tensor):
        return positions + offset.long().reshape(-1, 1)
    return positions + offset


@dataclass(frozen=True)
class ChunkPiece:
    """One segment (or part of one) inside a chunk of consecutive tokens."""

    name: str
    expert: str
    local_start: int
    length: int


@dataclass(frozen=True)
class ChunkPlan:
    """A run of consecutive token slots ``[start, end)`` of the joint sequence, cut into segment pieces."""

    start: int
    end: int
    pieces: tuple[ChunkPiece, ...]


def plan_chunk(spec: AttentionSpec, lengths: Mapping[str, int], start: int) -> ChunkPlan:
    """Place the given segments at ``start`` of the joint sequence, checking they continue it contiguously.

    Args:
        spec: the attention spec.
        lengths: ``{segment: number of tokens given}``; arranged in spec order, the given pieces must be
            consecutive, the first continuing at ``start`` (possibly mid-segment), every piece but the last
            completing its segment.
        start: number of token slots already processed (the cache length).

    Returns:
        The :class:`ChunkPlan`.
    """
    if not lengths:
        raise SpecError("inputs: expected at least one segment, received none")
    for name in lengths:
        spec.segment(name)
    ordered = [seg for seg in spec.segments if seg.name in lengths]
    cursor = start
    pieces = []
    for seg in ordered:
        seg_start = spec.start(seg.name)
        local_start = cursor - seg_start
        if not 0 <= local_start < seg.length:
            done = f"the first {start} token slots are processed" if start else "nothing is processed yet"
            raise SpecError(
                f"inputs: segment {seg.name!r} (slots {seg_start}..{seg_start + seg.length - 1}) does not "
                f"continue the sequence at slot {cursor} ({done}); "
                f"segments in order are {list(spec.names)}"
            )
        n = lengths[seg.name]
        remaining = seg.length - local_start
        if n < 1 or n > remaining:
            raise SpecError(
                f"inputs[{seg.name!r}]: expected between 1 and {remaining} tokens at this point, received {n}"
            )
        if n < remaining and seg is not ordered[-1]:
            raise SpecError(
                f"inputs[{seg.name!r}]: expected {remaining} tokens (a following segment is given, so this "
                f"one must be complete), received {n}"
            )
        pieces.append(ChunkPiece(seg.name, seg.expert, local_start, n))
        cursor += n
    return ChunkPlan(start=start, end=cursor, pieces=tuple(pieces))


@functools.lru_cache(maxsize=256)
def check_cut(spec: AttentionSpec, end: int) -> None:
    """Raise unless no token before slot ``end`` may see a token at or after it.

    Running tokens ``[start, end)`` against a cache of ``[0, start)`` is exact only at such a cut: the
    cached keys/values and the chunk's outputs must not depend on tokens that are not there yet.
    """
    if end >= spec.total_length:
        return
    tables = token_tables(spec)
    q = torch.arange(end)[:, None]
    k = torch.arange(end, spec.total_length)[None, :]
    sq, sk = tables.segment_id[q], tables.segment_id[k]
    intra = (sq == sk) & tables.sees_itself[sq] & (tables.block_id[k] <= tables.block_id[q])
    leaks = intra | tables.sees[sq, sk]
    if bool(leaks.any()):
        qi, ki = (int(i) for i in leaks.nonzero()[0])
        q_seg, k_seg = spec.names[int(tables.segment_id[qi])], spec.names[int(tables.segment_id[end + ki])]
        raise SpecError(
            f"cannot stop at token slot {end}: token {qi} (segment {q_seg!r}) "
            f"may see token {end + ki} (segment {k_seg!r}) that is "
            "not given; give whole segments (or whole blocks of a blockwise/causal segment) up to a point "
            "that nothing before it may see past"
        )
