"""Token embedding of the next-scale generator and its output head, usable inside any transformer trunk.

Token layout of the first ``K`` scales: scale 0 is ``l_0`` learned start-of-sequence tokens; scale ``k > 0``
is ``Linear(Cz -> C)`` of its teacher-forcing input (``f_hat`` after scales ``< k``, area-downsampled to the
size of scale ``k``; see `MultiScaleResidualQuantizer.next_scale_input`). Every token gets a learned
absolute position embedding and the embedding of its scale (level).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from var_foresight.scales import ScaleSchedule
from var_foresight.validation import check_finite, check_indices, check_int, check_tensor, type_name


class NextScaleEmbedding(nn.Module):
    """``word_embed`` Linear(Cz -> C), ``sos`` ``(l_0, C)``, ``pos_embed`` ``(L, C)``, ``level_embed``
    ``(S, C)``."""

    def __init__(self, schedule: ScaleSchedule, z_channels: int, width: int) -> None:
        super().__init__()
        if not isinstance(schedule, ScaleSchedule):
            raise TypeError(f"schedule: expected a ScaleSchedule, got {type_name(schedule)}")
        check_int("z_channels", z_channels, 1)
        check_int("width", width, 1)
        self.schedule, self.z_channels, self.width = schedule, z_channels, width
        std = (1 / width / 3) ** 0.5
        self.word_embed = nn.Linear(z_channels, width)
        self.sos = nn.Parameter(torch.randn(schedule.tokens_per_scale[0], width) * std)
        self.pos_embed = nn.Parameter(torch.randn(schedule.total_tokens, width) * std)
        self.level_embed = nn.Embedding(schedule.num_scales, width)
        nn.init.normal_(self.level_embed.weight, std=std)

    def forward(self, teacher_inputs: torch.Tensor | None, batch: int, num_scales: int) -> torch.Tensor:
        """Embed the first ``K = num_scales`` scales at once (teacher forcing) -> ``(B, L_K, C)``.

        teacher_inputs: ``(B, L_K - l_0, Cz)`` inputs of scales ``1..K-1`` (None or empty for ``K = 1``),
        floating and finite.
        """
        check_int("batch", batch, 1)
        if teacher_inputs is not None:
            check_tensor("teacher_inputs", teacher_inputs, 3, "float", f"(B, L_K - l_0, {self.z_channels})")
        end = self._check(num_scales, teacher_inputs, batch)
        tokens = self.sos.expand(batch, -1, -1)
        if teacher_inputs is not None and teacher_inputs.shape[1]:
            tokens = torch.cat(
                [tokens, self.word_embed(teacher_inputs.to(self.word_embed.weight.dtype))], dim=1
            )
        levels = self.schedule.level_ids(num_scales).to(tokens.device)
        if teacher_inputs is not None:
            check_finite("teacher_inputs", teacher_inputs)
        return tokens + self.pos_embed[:end] + self.level_embed(levels)

    def embed_scale(self, scale: int, inputs: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Embed one scale (incremental generation) -> ``(B, l_k, C)``; ``inputs`` ``(B, l_k, Cz)``, None
        for scale 0. Shapes and dtypes are checked; values are not (this is the per-scale step of the
        sampling loop, and its inputs come from the quantizer's ``f_hat``)."""
        check_int("scale", scale, 0, self.schedule.num_scales - 1)
        check_int("batch", batch, 1)
        if inputs is not None:
            check_tensor("inputs", inputs, kind="float")
        begin, end = self.schedule.offsets[scale]
        if scale == 0:
            tokens = self.sos.expand(batch, -1, -1)
        else:
            if inputs is None or inputs.shape != (batch, end - begin, self.z_channels):
                got = None if inputs is None else tuple(inputs.shape)
                raise ValueError(f"inputs: expected shape {(batch, end - begin, self.z_channels)}, got {got}")
            tokens = self.word_embed(inputs.to(self.word_embed.weight.dtype))
        return tokens + self.pos_embed[begin:end] + self.level_embed.weight[scale]

    def _check(self, num_scales: int, teacher_inputs: torch.Tensor | None, batch: int) -> int:
        check_int("num_scales", num_scales, 1, None)
        if not 1 <= num_scales <= self.schedule.num_scales:
            raise ValueError(f"num_scales: expected 1..{self.schedule.num_scales}, got {num_scales}")
        end = self.schedule.offsets[num_scales - 1][1]
        expected = (batch, end - self.schedule.tokens_per_scale[0], self.z_channels)
        got = (batch, 0, self.z_channels) if teacher_inputs is None else tuple(teacher_inputs.shape)
        if got != expected:
            raise ValueError(f"teacher_inputs: expected shape {expected} for {num_scales} scales, got {got}")
        return end


class NextScaleHead(nn.Module):
    """LayerNorm -> Linear(C -> V): hidden states ``(B, n, C)`` -> token logits ``(B, n, V)``."""

    def __init__(self, width: int, vocab_size: int) -> None:
        super().__init__()
        self.width, self.vocab_size = check_int("width", width, 1), check_int("vocab_size", vocab_size, 1)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Shape and dtype are checked, not values (it runs once per scale inside sampling loops)."""
        check_tensor("hidden", hidden, kind="float")
        if hidden.ndim < 1 or hidden.shape[-1] != self.width:
            raise ValueError(f"hidden: expected shape (..., {self.width}), got {tuple(hidden.shape)}")
        return self.proj(self.norm(hidden))


def next_scale_cross_entropy(
    logits: torch.Tensor, indices: Sequence[torch.Tensor], loss_scales: Sequence[int] | None = None
) -> torch.Tensor:
    """Cross-entropy over the tokens of the first ``K`` scales, uniform per token (as VAR trains).

    logits: ``(B, L_K, V)``; indices: the per-scale targets ``(B, l_k)`` of (at least) those ``K`` scales;
    loss_scales: which of the ``K`` scales count (default: all), e.g. ``[K - 1]`` to train the last one only.
    """
    check_tensor("logits", logits, 3, "float", "(B, L_K, V)")
    if isinstance(indices, torch.Tensor) or not isinstance(indices, Sequence) or len(indices) == 0:
        raise TypeError(
            f"indices: expected a non-empty list of per-scale (B, l_k) tensors, got {type_name(indices)}"
        )
    for k, idx in enumerate(indices):
        check_tensor(f"indices[{k}]", idx, 2, "int", "(B, l_k)")
        if idx.shape[0] != logits.shape[0]:
            raise ValueError(
                f"indices[{k}]: expected batch size {logits.shape[0]} (the logits'), got {tuple(idx.shape)}"
            )
    if loss_scales is not None:
        if isinstance(loss_scales, str | torch.Tensor) or not isinstance(loss_scales, Sequence):
            raise TypeError(
                f"loss_scales: expected a sequence of scale indices, got {type_name(loss_scales)}"
            )
        for k in loss_scales:
            check_int("loss_scales", k, None)
    sizes, length = [], logits.shape[1]
    for idx in indices:
        if sum(sizes) >= length:
            break
        sizes.append(idx.shape[1])
    targets = torch.cat(list(indices[: len(sizes)]), dim=1)
    if targets.shape != logits.shape[:2]:
        raise ValueError(
            f"indices: expected scales covering the logits' {tuple(logits.shape[:2])} tokens, "
            f"got {tuple(targets.shape)}"
        )
    check_finite("logits", logits)
    check_indices("indices", targets, logits.shape[-1])
    per_token = nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    per_token = per_token.view(targets.shape)
    if loss_scales is None:
        return per_token.mean()
    chosen = sorted(set(loss_scales))
    if not chosen or chosen[0] < 0 or chosen[-1] >= len(sizes):
        raise ValueError(
            f"loss_scales: expected a non-empty subset of 0..{len(sizes) - 1}, got {list(loss_scales)}"
        )
    pieces = per_token.split(sizes, dim=1)
    return torch.cat([pieces[k] for k in chosen], dim=1).mean()
