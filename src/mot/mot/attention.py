"""Joint attention over the concatenated segments with an explicit mask (SDPA or FlexAttention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mot.errors import ArgumentTypeError, SpecError

__all__ = ["additive_mask", "joint_attention"]


def additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean mask (True = may attend) to the additive form SDPA uses internally (0 or -inf).

    Converting once per forward instead of letting SDPA convert it in every layer saves one op per layer.
    """
    if not isinstance(mask, Tensor):
        raise ArgumentTypeError(f"mask: expected a bool tensor, received {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise SpecError(f"mask: expected a bool tensor, received dtype {mask.dtype}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise SpecError(f"dtype: expected a floating-point torch.dtype, received {dtype!r}")
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def joint_attention(q: Tensor, k: Tensor, v: Tensor, mask: object | None, backend: str = "sdpa") -> Tensor:
    """Scaled dot-product attention with GQA/MQA and an explicit mask; scale ``head_dim ** -0.5``.

    Args:
        q: ``(B, H, Lq, D)`` queries.
        k: ``(B, Hkv, Lk, D)`` keys, ``Hkv`` dividing ``H`` (query head ``h`` reads KV head
            ``h // (H // Hkv)``).
        v: ``(B, Hkv, Lk, D)`` values.
        mask: for ``"sdpa"`` a bool ``(B or 1, Lq, Lk)`` tensor (True = may attend), the same as an
            additive float mask (0 or -inf, see :func:`additive_mask`), or None (attend everywhere);
            for ``"flex"`` a FlexAttention ``BlockMask``.
        backend: ``"sdpa"`` or ``"flex"`` (on CPU FlexAttention has no backward: inference only).

    Returns:
        ``(B, H, Lq, D)``.

    Runs in every layer of every call: only the head counts are checked here (the model built the shapes).
    """
    n_heads, n_kv_heads = q.shape[1], k.shape[1]
    if n_heads % n_kv_heads:
        raise SpecError(f"k: expected a number of heads dividing {n_heads}, received {n_kv_heads}")
    if backend == "flex":
        from torch.nn.attention.flex_attention import flex_attention

        return flex_attention(q, k, v, block_mask=mask, enable_gqa=n_kv_heads != n_heads)
    if backend != "sdpa":
        raise SpecError(f"backend: expected 'sdpa' or 'flex', received {backend!r}")
    attn_mask = None if mask is None else mask[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, enable_gqa=n_kv_heads != n_heads)
