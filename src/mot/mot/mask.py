"""Compile an :class:`~mot.spec.AttentionSpec` to attention masks.

Three forms of the same relation "query token i may attend to key token j":

- :func:`compile_mask`: a boolean tensor for ``scaled_dot_product_attention`` (True = may attend);
- :func:`compile_block_mask`: a FlexAttention ``BlockMask`` built from the *same* predicate;
- :func:`reference_mask`: a plain-Python, loop-by-loop reading of the spec, used by tests as the oracle.

Padding: a valid query never sees a padding key. A padding query sees only itself, so that every row of
the mask has a key (a row without keys makes softmax return NaN); its output is garbage that no valid token
ever reads.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mot.errors import SpecError, check_int
from mot.layout import (
    TokenTables,
    ValidLengths,
    check_bool_tensor,
    check_spec,
    token_tables,
    token_valid,
)
from mot.spec import AttentionSpec, Blockwise

if TYPE_CHECKING:
    from torch.nn.attention.flex_attention import BlockMask

__all__ = [
    "check_rows_see_a_key",
    "compile_block_mask",
    "compile_mask",
    "reference_mask",
    "render_mask",
]


def _allowed(tables: TokenTables, valid: Tensor, b: Tensor, q: Tensor, k: Tensor) -> Tensor:
    """The one predicate behind both compiled forms; ``q``/``k`` are global slot indices (broadcastable)."""
    sq, sk = tables.segment_id[q], tables.segment_id[k]
    intra = (sq == sk) & tables.sees_itself[sq] & (tables.block_id[k] <= tables.block_id[q])
    by_rule = intra | tables.sees[sq, sk]
    query_valid = valid[b, q]
    return (query_valid & by_rule & valid[b, k]) | (~query_valid & (q == k))


def _query_range(spec: AttentionSpec, queries: tuple[int, int] | None, keys_end: int | None):
    if queries is None:
        q0, q1 = 0, spec.total_length
    elif (
        not isinstance(queries, tuple | list)
        or len(queries) != 2
        or any(isinstance(i, bool) or not isinstance(i, int) for i in queries)
    ):
        raise SpecError(f"queries: expected a (start, end) pair of ints or None, received {queries!r}")
    else:
        q0, q1 = queries
    k1 = spec.total_length if keys_end is None else check_int("keys_end", keys_end, minimum=0)
    if not 0 <= q0 < q1 <= k1 <= spec.total_length:
        raise SpecError(
            f"queries/keys_end: expected 0 <= start < end <= keys_end <= {spec.total_length}, "
            f"received queries={(q0, q1)}, keys_end={k1}"
        )
    return q0, q1, k1


def _prepare(
    spec: AttentionSpec,
    valid_lengths: ValidLengths | None,
    batch_size: int,
    queries: tuple[int, int] | None,
    keys_end: int | None,
    device: torch.device | str,
    valid: Tensor | None,
) -> tuple[int, int, int, Tensor]:
    """Checked query range and ``(B, >= keys_end)`` validity shared by both compiled forms."""
    check_spec(spec)
    q0, q1, k1 = _query_range(spec, queries, keys_end)
    if valid is None:
        return q0, q1, k1, token_valid(spec, valid_lengths, batch_size, end=k1, device=device)
    check_bool_tensor("valid", valid, 2, f"(B, >= {k1})")
    if valid.shape[0] < 1 or valid.shape[1] < k1:
        raise SpecError(f"valid: expected shape (B >= 1, >= {k1}), received {tuple(valid.shape)}")
    return q0, q1, k1, valid


def check_rows_see_a_key(mask: Tensor, spec: AttentionSpec | None = None, query_start: int = 0) -> None:
    """Raise :class:`SpecError` if some query row of a ``(B, Lq, Lk)`` boolean mask sees no key."""
    check_bool_tensor("mask", mask, 3, "(B, Lq, Lk)")
    if spec is not None:
        check_spec(spec)
    check_int("query_start", query_start, minimum=0)
    if spec is not None and query_start + mask.shape[1] > spec.total_length:
        raise SpecError(
            f"mask: expected at most {spec.total_length - query_start} query rows from query_start="
            f"{query_start} (the spec's length is {spec.total_length}), received {mask.shape[1]}"
        )
    empty = ~mask.any(dim=-1)
    if bool(empty.any()):
        b, row = (int(i) for i in empty.nonzero()[0])
        where = f"query slot {query_start + row}"
        if spec is not None:
            seg = spec.names[int(token_tables(spec).segment_id[query_start + row])]
            where += f" (segment {seg!r})"
        raise SpecError(
            f"sample {b}, {where} sees no key: every query row needs at least one visible valid key "
            "(check valid_lengths and the sees relation)"
        )


def compile_mask(
    spec: AttentionSpec,
    valid_lengths: ValidLengths | None = None,
    batch_size: int = 1,
    queries: tuple[int, int] | None = None,
    keys_end: int | None = None,
    device: torch.device | str = "cpu",
    valid: Tensor | None = None,
) -> Tensor:
    """Boolean attention mask (True = may attend) for ``scaled_dot_product_attention``.

    Args:
        spec: the attention spec.
        valid_lengths: ``{segment: (B,) ints}`` per-sample valid lengths; None means no padding.
        batch_size: B (ignored when ``valid`` is given).
        queries: ``(start, end)`` query slots (default: all); keys are always slots ``[0, keys_end)``.
        keys_end: number of key slots (default: the whole sequence).
        device: device of the result.
        valid: precomputed ``(B, >= keys_end)`` token validity (overrides ``valid_lengths``).

    Returns:
        ``(B, Lq, Lk)`` bool. Raises :class:`SpecError` if a query row sees no key.
    """
    q0, q1, k1, valid = _prepare(spec, valid_lengths, batch_size, queries, keys_end, device, valid)
    tables = token_tables(spec, valid.device)
    b = torch.arange(valid.shape[0], device=valid.device)[:, None, None]
    q = torch.arange(q0, q1, device=valid.device)[None, :, None]
    k = torch.arange(k1, device=valid.device)[None, None, :]
    mask = _allowed(tables, valid, b, q, k)
    check_rows_see_a_key(mask, spec, q0)
    return mask


@functools.lru_cache(maxsize=64)
def unpadded_mask(spec: AttentionSpec, queries: tuple[int, int], keys_end: int, device: str) -> Tensor | None:
    """Cached ``(1, Lq, Lk)`` mask without padding, or None when it allows everything (no mask needed)."""
    mask = compile_mask(spec, None, 1, queries, keys_end, device)
    return None if bool(mask.all()) else mask


def compile_block_mask(
    spec: AttentionSpec,
    valid_lengths: ValidLengths | None = None,
    batch_size: int = 1,
    queries: tuple[int, int] | None = None,
    keys_end: int | None = None,
    device: torch.device | str = "cpu",
    valid: Tensor | None = None,
    block_size: int = 128,
) -> BlockMask:
    """FlexAttention ``BlockMask`` of the same relation as :func:`compile_mask` (same arguments).

    The mask function indexes the spec's per-token tables, so FlexAttention can skip fully masked
    ``block_size`` x ``block_size`` tiles (what makes it pay off for block-sparse masks when compiled).
    """
    from torch.nn.attention.flex_attention import create_block_mask

    check_int("block_size", block_size)
    q0, q1, k1, valid = _prepare(spec, valid_lengths, batch_size, queries, keys_end, device, valid)
    tables = token_tables(spec, valid.device)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return _allowed(tables, valid, b, q_idx + q0, kv_idx)

    return create_block_mask(
        mask_mod,
        B=valid.shape[0],
        H=None,
        Q_LEN=q1 - q0,
        KV_LEN=k1,
        device=valid.device,
        BLOCK_SIZE=block_size,
    )


def reference_mask(
    spec: AttentionSpec, valid_lengths: ValidLengths | None = None, batch_size: int = 1
) -> Tensor:
    """The spec read literally, one (query, key) pair at a time: ``(B, L, L)`` bool. For tests and docs."""
    check_spec(spec)
    token_valid(spec, valid_lengths, batch_size)  # the same checks of valid_lengths as the compiled forms
    lengths = {name: [int(n) for n in torch.as_tensor(v)] for name, v in (valid_lengths or {}).items()}
    slots = []  # (segment, index inside the segment) for every slot of the joint sequence
    for seg in spec.segments:
        slots.extend((seg, i) for i in range(seg.length))

    def is_valid(b: int, seg, i: int) -> bool:
        return i < lengths[seg.name][b] if seg.name in lengths else True

    def block_of(seg, i: int) -> int:
        if isinstance(seg.rule, Blockwise):
            edge = 0
            for block, size in enumerate(seg.rule.sizes):
                edge += size
                if i < edge:
                    return block
        return i if seg.rule == "causal" else 0

    rows = []
    for b in range(batch_size):
        matrix = []
        for qi, (qseg, i) in enumerate(slots):
            row = []
            for ki, (kseg, j) in enumerate(slots):
                if not is_valid(b, qseg, i):
                    row.append(qi == ki)  # padding query: itself only
                    continue
                if not is_valid(b, kseg, j):
                    row.append(False)
                elif kseg is qseg:
                    row.append(qseg.rule != "none" and block_of(kseg, j) <= block_of(qseg, i))
                else:
                    row.append(spec.may_see(qseg.name, kseg.name))
            matrix.append(row)
        rows.append(matrix)
    return torch.tensor(rows, dtype=torch.bool)


def render_mask(mask: Tensor, spec: AttentionSpec | None = None) -> str:
    """A readable picture of one ``(L, L)`` mask: ``#`` may attend, ``.`` may not; segment borders marked."""
    check_bool_tensor("mask", mask, 2, "(L, L) (one sample)")
    borders: set[int] = set()
    if spec is not None:
        check_spec(spec)
        size = spec.total_length
        if tuple(mask.shape) != (size, size):
            raise SpecError(
                f"mask: expected shape ({size}, {size}) (the spec's length), received {tuple(mask.shape)}"
            )
        borders = {spec.start(name) for name in spec.names[1:]}
    lines = []
    for qi, row in enumerate(mask.tolist()):
        if qi in borders:
            lines.append("")
        cells = []
        for ki, allowed in enumerate(row):
            if ki in borders:
                cells.append(" ")
            cells.append("#" if allowed else ".")
        lines.append("".join(cells))
    return "\n".join(lines)
