"""Shared tiny models for the mot tests (kept small: the whole package's tests run in about a minute)."""

from __future__ import annotations

import pytest
import torch

from mot import AttentionSpec, Blockwise, ExpertConfig, MixtureOfTransformers, MoTConfig, Segment

# Tiny matrices on 2 shared cores: one intra-op thread avoids OpenMP barrier waits that made a forward of
# the tiny test model ~100x slower when the other core was busy (measured: 280 ms -> 5 ms per call).
torch.set_num_threads(1)


def randomize(model: MixtureOfTransformers, seed: int = 0, std: float = 0.3) -> MixtureOfTransformers:
    """Give every parameter (norm weights included, which start at zero) random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model


def progressive_spec(und_length: int, scale_sizes: tuple[int, ...], chunk: int) -> AttentionSpec:
    """Understanding -> next-scale generation -> [state | action chunk], one way only (F1's layout
    without its history segment)."""
    return AttentionSpec(
        segments=[
            Segment("und", expert="und", length=und_length, rule="full"),
            Segment("gen", expert="gen", length=sum(scale_sizes), rule=Blockwise(tuple(scale_sizes))),
            Segment("act", expert="act", length=1 + chunk, rule=Blockwise((1, chunk))),
        ],
        sees={"gen": ["und"], "act": ["und", "gen"]},
    )


@pytest.fixture(scope="session")
def uga_spec() -> AttentionSpec:
    """F1's understanding -> generation (4 scales) -> action (state | chunk of 4)."""
    return progressive_spec(6, (1, 4, 9), 4)


@pytest.fixture(scope="session")
def make_progressive_spec():
    """``make_progressive_spec(und_length, scale_sizes, chunk)``: see :func:`progressive_spec`."""
    return progressive_spec


@pytest.fixture(scope="session")
def uga_model() -> MixtureOfTransformers:
    """Three experts with different widths sharing 4 query heads and 1 KV head of size 8."""
    config = MoTConfig(
        n_layers=2,
        n_heads=4,
        n_kv_heads=1,
        head_dim=8,
        experts={
            "und": ExpertConfig(width=24, mlp_width=40),
            "gen": ExpertConfig(width=16, mlp_width=24),
            "act": ExpertConfig(width=12, mlp_width=20),
        },
    )
    return randomize(MixtureOfTransformers(config).eval())


def uga_inputs(model: MixtureOfTransformers, spec: AttentionSpec, batch: int = 2, seed: int = 0):
    """Random inputs ``{segment: (B, length, width)}`` for every segment of ``spec``."""
    generator = torch.Generator().manual_seed(seed)
    return {
        seg.name: torch.randn(batch, seg.length, model.config.experts[seg.expert].width, generator=generator)
        for seg in spec.segments
    }


@pytest.fixture(scope="session")
def randomized():
    """``randomized(model, seed=0, std=0.3)`` -> the model with random parameters (norms included)."""
    return randomize


@pytest.fixture(scope="session")
def make_inputs():
    """``make_inputs(model, spec, batch=2, seed=0)`` -> random inputs for every segment."""
    return uga_inputs
