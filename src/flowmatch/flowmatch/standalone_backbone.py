"""A small transformer backbone so the head works without ``mot``.

Sequence: ``[context tokens (N) | query tokens (T)]`` where the query tokens are the optional state token
and the action tokens. The context is a feature vector ``(B, C)`` (one token) or tokens ``(B, N, C)``,
projected to width ``w``. Attention is bidirectional; padded context tokens are never attended to. Only the
query tokens are returned.

``forward`` checks types and shapes, not values: it runs at every step of a sampler's loop, where a NaN/inf
check would add a device synchronization per step; :class:`flowmatch.FlowMatchingHead` checks its
context once per ``loss`` or ``sample`` call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from einops import rearrange
from torch import nn

from flowmatch._validation import require_finite_number, require_floating, require_shape, require_tensor


@dataclass(frozen=True)
class BackboneConfig:
    """Shape of :class:`TransformerBackbone`.

    Attributes:
        width: token width ``w`` (must be divisible by ``heads``).
        context_dim: feature size ``C`` of the conditioning vector or tokens.
        depth: number of transformer blocks.
        heads: attention heads.
        mlp_ratio: hidden width of the MLP as a multiple of ``width``.
        max_query_tokens: most query tokens (state + chunk) the learned positions cover.
    """

    width: int
    context_dim: int
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    max_query_tokens: int = 64

    def __post_init__(self) -> None:
        for name in ("width", "context_dim", "depth", "heads", "max_query_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, received {value!r}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        require_finite_number("mlp_ratio", self.mlp_ratio)
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, received {self.mlp_ratio}")

    def to_dict(self) -> dict[str, int | float]:
        """Plain-data form for JSON/YAML."""
        return asdict(self)


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attn_out = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        hidden = max(1, round(width * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` (B, L, w); ``key_mask`` bool (B, L), False for keys nobody may attend to."""
        q, k, v = rearrange(
            self.qkv(self.attn_norm(x)), "b l (three h d) -> three b h l d", three=3, h=self.heads
        )
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.attn_out(rearrange(attended, "b h l d -> b l (h d)"))
        return x + self.mlp(self.mlp_norm(x))


class TransformerBackbone(nn.Module):
    """Maps query tokens ``(B, T, w)`` to ``(B, T, w)`` while attending to a projected context."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        if not isinstance(config, BackboneConfig):
            raise TypeError(f"config must be a BackboneConfig, received {type(config).__name__}")
        self.config = config
        w = config.width
        self.context_in = nn.Linear(config.context_dim, w)
        self.context_type = nn.Parameter(torch.zeros(w))
        self.query_position = nn.Parameter(torch.randn(config.max_query_tokens, w) * 0.02)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(w, config.heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.out_norm = nn.LayerNorm(w)

    def forward(
        self,
        query_tokens: torch.Tensor,
        context: torch.Tensor,
        *,
        context_mask: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the backbone.

        Args:
            query_tokens: ``(B, T, w)``, e.g. ``[state token, action tokens]``; ``T <= max_query_tokens``.
            context: ``(B, C)`` feature vector or ``(B, N, C)`` tokens.
            context_mask: bool ``(B, N)``, True for real context tokens (only with token context). Each
                sample needs at least one real context token.
            query_mask: bool ``(B, T)``, True for real query tokens; padded ones (e.g. chunk steps past the
                end of a demonstration) are never attended to, so they cannot change the real ones' outputs.

        Returns:
            ``(B, T, w)`` output tokens at the query positions.
        """
        cfg = self.config
        require_floating("query_tokens", query_tokens)
        require_shape("query_tokens", query_tokens, (None, None, cfg.width))
        batch, n_query, _ = query_tokens.shape
        if n_query > cfg.max_query_tokens:
            raise ValueError(
                f"query_tokens has {n_query} tokens, more than max_query_tokens={cfg.max_query_tokens}"
            )
        context = self.check_context(context, batch, context_mask=context_mask)
        context_tokens = self.context_in(context) + self.context_type
        key_mask = None
        if context_mask is not None or query_mask is not None:
            device = query_tokens.device
            context_valid = torch.ones(batch, context_tokens.shape[1], dtype=torch.bool, device=device)
            query_valid = torch.ones(batch, n_query, dtype=torch.bool, device=device)
            if context_mask is not None:
                context_valid = context_mask
            if query_mask is not None:
                query_valid = _checked_mask("query_mask", query_mask, (batch, n_query))
            key_mask = torch.cat([context_valid.to(device), query_valid.to(device)], dim=1)
        x = torch.cat([context_tokens, query_tokens + self.query_position[:n_query]], dim=1)
        for block in self.blocks:
            x = block(x, key_mask)
        return self.out_norm(x[:, -n_query:])

    def check_context(
        self, context: torch.Tensor, batch: int | None, *, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Check ``context`` ((batch, C) or (batch, N, C); any batch for None) and ``context_mask`` (bool
        (batch, N)); return the context as tokens ``(batch, N, C)``. ``forward`` calls it; a caller may call
        it first to fail before it draws noise or times."""
        cfg = self.config
        require_floating("context", context)
        shown = "B" if batch is None else batch
        if context.ndim == 2:
            require_shape("context", context, (batch, cfg.context_dim))
            context = context[:, None, :]
        elif context.ndim == 3:
            require_shape("context", context, (batch, None, cfg.context_dim))
        else:
            raise ValueError(
                f"context must have shape ({shown}, {cfg.context_dim}) or ({shown}, N, {cfg.context_dim}), "
                f"received {tuple(context.shape)}"
            )
        if context_mask is not None:
            _checked_mask("context_mask", context_mask, (context.shape[0], context.shape[1]))
            if not bool(context_mask.any(dim=1).all()):
                raise ValueError("context_mask must mark at least one real context token in every sample")
        return context


def _checked_mask(name: str, mask: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    require_tensor(name, mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must have dtype torch.bool, received {mask.dtype}")
    return require_shape(name, mask, shape)
