"""Nearest-code lookups of the shared codebook: a direct distance + argmin, and vector-quantize-pytorch.

Both take residual vectors ``z`` ``(N, Cz)`` and the codebook ``(V, Cz)`` and return indices ``(N,)`` int64
computed in float32 with plain Euclidean distance (no l2 normalisation), as the released tokenizer does.
"""

from __future__ import annotations

from typing import Protocol

import torch
from vector_quantize_pytorch import VectorQuantize

from var_foresight.validation import check_finite, check_int, check_tensor


class CodeLookup(Protocol):
    """``(z (N, Cz), codebook (V, Cz)) -> indices (N,)``."""

    def __call__(self, z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor: ...


def check_lookup_arguments(z: torch.Tensor, codebook: torch.Tensor) -> None:
    """``z`` ``(N, Cz)`` and ``codebook`` ``(V >= 1, Cz)``, floating and finite."""
    check_tensor("codebook", codebook, 2, "float", "(V, Cz)")
    check_tensor("z", z, 2, "float", f"(N, {codebook.shape[1]})")
    if codebook.shape[0] < 1:
        raise ValueError(f"codebook: expected at least one code, got shape {tuple(codebook.shape)}")
    if z.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"z: expected shape (N, {codebook.shape[1]}) (the codebook's width), got {tuple(z.shape)}"
        )
    check_finite("z", z)
    check_finite("codebook", codebook)


def direct_lookup(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``argmin_v |z|^2 + |e_v|^2 - 2 z.e_v`` in float32, in the released tokenizer's order of operations so
    that near-ties resolve the same way. ``z`` ``(N, Cz)`` and ``codebook`` ``(V, Cz)`` are checked (shape,
    dtype, finite); the quantizer calls the unchecked `_direct_lookup` per scale after checking its input."""
    check_lookup_arguments(z, codebook)
    return _direct_lookup(z, codebook)


def _direct_lookup(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    z, codebook = z.float(), codebook.float()
    distances = torch.sum(z.square(), dim=1, keepdim=True) + torch.sum(codebook.square(), dim=1)
    distances.addmm_(z, codebook.T, alpha=-2, beta=1)
    # min's indices are argmin's (the first of equal minima) from a faster CPU kernel
    return distances.min(dim=1).indices


class VectorQuantizeLookup:
    """The per-scale codebook served by ``vector_quantize_pytorch.VectorQuantize`` (pinned 1.32.0).

    Configured as a plain Euclidean codebook (no k-means init, no EMA, no rotation trick, no projections);
    the shared codebook is copied into it before every lookup, so it never owns or changes the weights. It
    holds no parameters of the tokenizer and adds no keys to its state dict.
    """

    def __init__(self, vocab_size: int, dim: int) -> None:
        self.vocab_size, self.dim = check_int("vocab_size", vocab_size), check_int("dim", dim)
        self.vq: VectorQuantize | None = None  # built on first use, on the device of the data

    def _build(self, device: torch.device) -> VectorQuantize:
        with torch.device(device):
            return VectorQuantize(
                dim=self.dim,
                codebook_size=self.vocab_size,
                kmeans_init=False,
                ema_update=False,
                rotation_trick=False,
                commitment_weight=0.0,
                threshold_ema_dead_code=0,
                use_cosine_sim=False,
            ).eval()

    def __call__(self, z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """``z`` ``(N, dim)``, ``codebook`` ``(vocab_size, dim)`` -> ``(N,)``, arguments checked."""
        check_lookup_arguments(z, codebook)
        if tuple(codebook.shape) != (self.vocab_size, self.dim):
            raise ValueError(
                f"codebook: expected shape {(self.vocab_size, self.dim)}, got {tuple(codebook.shape)}"
            )
        return self.lookup(z, codebook)

    def lookup(self, z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """The unchecked lookup the quantizer calls per scale (it checks its latent once at entry)."""
        if self.vq is None or self.vq.codebook.device != z.device:
            self.vq = self._build(z.device)
        with torch.no_grad():
            self.vq.codebook = codebook.detach().float()
            _, indices, _ = self.vq(z.detach().float()[None])
        return indices[0].long()


def make_lookup(kind: str, vocab_size: int, dim: int) -> CodeLookup:
    """``"direct"`` (fast, the default) or ``"vector_quantize"``."""
    if kind == "direct":
        return _direct_lookup
    if kind == "vector_quantize":
        return VectorQuantizeLookup(vocab_size, dim).lookup
    raise ValueError(f"lookup: expected 'direct' or 'vector_quantize', got {kind!r}")
