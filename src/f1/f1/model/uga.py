"""The UGA token layout as an attention spec: understanding -> generation -> action, one way only.

Segments, in sequence order (``mot`` segments; ``hist`` and ``gen`` share the generation expert):

============  ==========  ===========================  ======================================
segment       expert      intra-segment rule           may also see
============  ==========  ===========================  ======================================
``und``       ``und``     full (images + language)     nothing (strictly upstream)
``hist``      ``gen``     full (encoded history)       ``und``
``gen``       ``gen``     block-causal over scales     ``und``, ``hist``
``fut``       ``gen``     full (complete foresight)    ``und``, ``hist``, ``gen``
``act``       ``act``     ``[state] -> [chunk]``       ``und`` and, by mode, ``hist``/``gen``/``fut``
============  ==========  ===========================  ======================================

``fut`` (only with ``generation.complete_foresight``) holds the complete imagined frame, every predicted
scale summed at the finest grid, which the ``gen`` tokens never carry (their inputs stop one scale short).

Unlike the published mask (whose flag list is one element short, so understanding attends to the
history tokens), nothing upstream ever sees a downstream segment. Mode ``no_gen`` keeps ``und`` and
``act``; ``history_no_foresight`` keeps ``und``, ``hist`` and ``act``.
"""

from __future__ import annotations

from collections.abc import Sequence

from f1.errors import ConfigError
from f1.model.config import MODES
from mot import AttentionSpec, Blockwise, Segment

__all__ = ["EXPERTS", "uga_spec"]

#: Expert names of the trunk, in sequence order.
EXPERTS: tuple[str, str, str] = ("und", "gen", "act")


def uga_spec(
    mode: str,
    *,
    und_length: int,
    chunk_size: int,
    history_length: int | None = None,
    scale_tokens: Sequence[int] | None = None,
    foresight_length: int | None = None,
) -> AttentionSpec:
    """The attention spec of one forward pass.

    Args:
        mode: ``"f1"``, ``"no_gen"`` or ``"history_no_foresight"``.
        und_length: image tokens of all cameras + language slots.
        chunk_size: ``H`` action steps (the action segment is ``1 + H`` tokens: state, then the chunk).
        history_length: tokens of the encoded history (modes ``f1`` and ``history_no_foresight``).
        scale_tokens: tokens of each predicted scale, e.g. ``(1, 4, 9, 16)`` (mode ``f1``).
        foresight_length: tokens of the complete foresight ``fut`` (mode ``f1``; None: no such segment).

    Returns:
        The :class:`mot.AttentionSpec` with segments ``und`` [, ``hist``] [, ``gen`` [, ``fut``]], ``act``.
    """
    if mode not in MODES:
        raise ConfigError(f"mode: expected one of {list(MODES)}, received {mode!r}")
    segments = [Segment("und", "und", und_length, "full")]
    act_sees = ["und"]
    sees: dict[str, list[str]] = {}
    if mode in ("f1", "history_no_foresight"):
        if not history_length:
            raise ConfigError(
                f"history_length: mode {mode!r} needs the number of history tokens, "
                f"received {history_length!r}"
            )
        segments.append(Segment("hist", "gen", history_length, "full"))
        sees["hist"] = ["und"]
        act_sees.append("hist")
    if mode == "f1":
        sizes = tuple(scale_tokens or ())
        if not sizes:
            raise ConfigError("scale_tokens: mode 'f1' needs the tokens of at least one predicted scale")
        segments.append(Segment("gen", "gen", sum(sizes), Blockwise(sizes)))
        sees["gen"] = ["und", "hist"]
        act_sees.append("gen")
        if foresight_length:
            segments.append(Segment("fut", "gen", foresight_length, "full"))
            sees["fut"] = ["und", "hist", "gen"]
            act_sees.append("fut")
    elif foresight_length:
        raise ConfigError(f"foresight_length: mode {mode!r} predicts no foresight, expected None")
    segments.append(Segment("act", "act", 1 + chunk_size, Blockwise((1, chunk_size))))
    sees["act"] = act_sees
    return AttentionSpec(segments=tuple(segments), sees={k: tuple(v) for k, v in sees.items()})
