"""Parameter and FLOP counts of a configuration, without allocating its weights (meta device).

:func:`count_parameters` builds the model on the meta device and sums parameters per component.
:func:`inference_flops` gives the FLOPs (2 x multiply-accumulates) of one :meth:`F1Model.sample` call per
module: the vision tower and the VQ-VAE encoder are counted by ``torch.utils.flop_counter`` on the meta
device; the trunk, history encoder, heads and adapters by closed-form counts of their matrix products
(including attention scores and values over the keys each query group sees), checked against
``torch.utils.flop_counter`` on the tiny preset in the tests.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from f1.model.config import F1Config
from f1.model.f1_model import F1Model
from flowmatch import FIXED_STEP_SOLVERS

__all__ = ["count_parameters", "inference_flops"]


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _meta_model(config: F1Config) -> F1Model:
    with torch.device("meta"):
        return F1Model(config)


def count_parameters(config: F1Config) -> dict[str, int]:
    """Parameters per component of a model built from ``config`` (on the meta device: no memory).

    Keys: ``vision``, ``projector``, ``language_embedding``, ``understanding_expert`` (their sum is the
    PaliGemma part, also given as ``paligemma``), ``generation_expert``, ``action_expert``,
    ``generation_heads`` (history encoder, next-scale embedding and head), ``embodiment_adapters``,
    ``vqvae`` and ``total``.
    """
    model = _meta_model(config)
    experts = model.trunk.experts
    gen = model.generation
    counts = {
        "vision": _numel(model.understanding.vision),
        "projector": _numel(model.understanding.projector),
        "language_embedding": _numel(model.understanding.language),
        "understanding_expert": _numel(experts["und"]),
        "generation_expert": _numel(experts["gen"]) if "gen" in experts else 0,
        "action_expert": _numel(experts["act"]),
        "generation_heads": 0
        if gen is None
        else _numel(gen.history) + _numel(gen.embedding) + _numel(gen.head),
        "embodiment_adapters": _numel(model.adapters),
        "vqvae": 0 if gen is None else _numel(gen.tokenizer),
    }
    counts["paligemma"] = sum(
        counts[k] for k in ("vision", "projector", "language_embedding", "understanding_expert")
    )
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def _linear_per_token(config: F1Config, width: int, mlp: int) -> int:
    """Multiply-accumulates per token of one expert layer's projections and GeGLU MLP."""
    trunk = config.trunk
    heads, kv = trunk.n_heads * trunk.head_dim, trunk.n_kv_heads * trunk.head_dim
    return width * heads + 2 * width * kv + heads * width + 3 * width * mlp


def _trunk_flops(
    config: F1Config, tokens: int, keys: int, width: int, mlp: int, kv_only: bool = False
) -> int:
    """FLOPs of ``tokens`` queries of one expert through all layers, attending to ``keys`` keys.

    ``kv_only``: the expert's last layer computes only keys and values (``last_layer_kv_only``): no
    queries, attention, output projection or MLP there.
    """
    trunk = config.trunk
    linear = tokens * _linear_per_token(config, width, mlp)
    attention = 2 * tokens * keys * trunk.n_heads * trunk.head_dim  # scores and weighted values
    if not kv_only:
        return 2 * trunk.n_layers * (linear + attention)
    keys_values = tokens * 2 * width * trunk.n_kv_heads * trunk.head_dim
    return 2 * ((trunk.n_layers - 1) * (linear + attention) + keys_values)


def _meta_flops(run) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def inference_flops(config: F1Config, num_scales: int | None = None) -> dict[str, int]:
    """FLOPs of one :meth:`~f1.model.F1Policy.plan` call at batch 1, per module (see module docstring).

    Keys as in the latency table: ``image_encode``, ``prefix``, ``history_encode``, ``foresight``,
    ``flow_steps`` (all ODE steps; fixed-step solvers: Euler 1, midpoint/Heun 2, RK4 4 evaluations per
    step) and ``total``.
    """
    model = _meta_model(config)
    trunk = config.trunk
    cameras, size = len(config.cameras), config.vision.image_size
    flops: dict[str, int] = {}
    with torch.device("meta"):
        images = torch.empty(cameras, 3, size, size)
        # the language embedding is a lookup: no FLOPs
        vision, projector = model.understanding.vision, model.understanding.projector
        flops["image_encode"] = _meta_flops(lambda: projector(vision(images)))
    experts = model.trunk.config.experts
    und = model.understanding.length
    flops["prefix"] = _trunk_flops(
        config,
        und,
        und,
        trunk.understanding_width,
        trunk.understanding_mlp,
        kv_only=experts["und"].last_layer_kv_only,
    )
    keys = und
    if config.has_history:
        gen = model.generation
        frames = config.generation.history_frames
        vq = config.generation.vqvae
        with torch.device("meta"):
            pixels = torch.empty(frames, 3, *vq.image_size)
            encoder = _meta_flops(lambda: gen.tokenizer.encode_latent(pixels))
        hist = gen.history.config
        cells, width, n = hist.num_tokens, hist.width, frames * hist.num_tokens
        mixer = hist.num_layers * (n * (4 * width * width + 2 * width * 4 * width) + 2 * n * n * width)
        history_encoder = 2 * (n * vq.z_channels * width + mixer + n * width * width)
        keys += cells
        flops["history_encode"] = (
            encoder
            + history_encoder
            + _trunk_flops(
                config,
                cells,
                keys,
                trunk.generation_width,
                trunk.generation_mlp,
                kv_only=experts["gen"].last_layer_kv_only,
            )
        )
    if config.has_foresight:
        vq = config.generation.vqvae
        scales = num_scales or config.generation.inference_scales
        total = 0
        for tokens in model.generation.scale_tokens(scales):
            keys += tokens
            total += _trunk_flops(config, tokens, keys, trunk.generation_width, trunk.generation_mlp)
            total += (
                2 * tokens * (vq.z_channels * trunk.generation_width + trunk.generation_width * vq.vocab_size)
            )
        flops["foresight"] = total
    horizon, width = config.action.chunk_size, trunk.action_width
    embodiment = config.embodiments[0]
    adapters = 2 * (
        embodiment.state_dim * width
        + horizon * (embodiment.action_dim * width + 3 * width * width)
        + horizon * width * embodiment.action_dim
    )
    per_evaluation = _trunk_flops(config, 1 + horizon, keys + 1 + horizon, width, trunk.action_mlp) + adapters
    evaluations = FIXED_STEP_SOLVERS[config.action.solver].evaluations_per_step
    flops["flow_steps"] = per_evaluation * evaluations * config.action.flow_steps
    flops["total"] = sum(flops.values())
    return flops
