"""Training memory per rank: parameters, gradients, optimizer state and activations of an F1 model.

:func:`plan_memory` answers "does this run fit?" before it starts: the bytes one rank holds for a training
step of ``batch_size`` samples (the micro-batch of one process) under DDP or FSDP2, with or without LoRA
and activation checkpointing, in bf16 or fp32. Every number comes from one of two places:

- **counted**: parameters come from the real model built on the meta device (``F1Model(config)`` under
  ``torch.device("meta")``: no memory), unit by unit, so the plan follows the model code (a module that
  is no longer built is no longer counted);
- **measured**: activations are the bytes saved for backward by one real training forward of a small
  calibration model on the CPU (``torch.autograd.graph.saved_tensors_hooks``, deduplicated by storage,
  counting only what is still alive when the forward returns), split by *site* (a module of the trunk, a
  vision block's submodule, the heads, the rest), divided by each site's *units* and scaled to the target
  by the target's units (:data:`ACTIVATION_FORMULA`). The working memory a forward holds beyond what it
  saves (its copies of the batch, the frozen tokenizer encoding frames, the loss heads) is measured on the
  same forward with the CPU profiler's allocation events and scaled the same way.

Accounting per rank (``N`` parameters, ``T`` trainable ones, LoRA adapters included; ``S(x)`` the numel
of ``x`` sharded over ``W`` ranks the way FSDP2 pads it: ``sum(ceil(dim0 / W) * rest)``; ``p`` the
compute dtype's bytes, 2 for bf16, 4 for fp32):

| category | `ddp` | `fsdp` (FSDP2: a unit per MoT layer and per vision block, the rest at the root) |
|---|---|---|
| parameters | `4 N` (fp32 master weights) | `4 S(N)` (fp32 sharded master weights; tokenizer whole) |
| gradients | `4 T` | `4 S(T)` (fp32, reduce-scattered) |
| optimizer | `8 T` (AdamW: two fp32 moments) | `8 S(T)` |
| ddp buckets | `4 T` when `W > 1` (a flat copy) | |
| weight copies | `2 C` in bf16 (autocast's copies) | |
| root unsharded | | `p N_root` |
| units in flight | | forward `2 p U`, backward `2 p U + 2 (p + r) U_T` |
| root gradients | | `(p + r) T_root` |
| activations | measured and scaled (below) | the same (each rank runs its own micro-batch) |

- ddp buckets: torch's default ``gradient_as_bucket_view=False`` keeps the gradients a second time in
  flat buckets; the trainer wraps no DDP around one process.
- weight copies: bf16 autocast casts each Linear/Conv weight (``C`` their numel) once per forward and
  backward keeps the copy until that layer's backward.
- root unsharded: the root's parameters, gathered at its forward and kept until backward ends.
- units in flight: the running unit and the prefetched one (``U``: the largest unit's numel), in backward
  also two units' unsharded gradients and their fp32 reduce copy (``r = 4`` in bf16, 0 in fp32; ``U_T``:
  the unit's trainable numel).
- root gradients: the root's unsharded gradients, reduced when backward ends.

LoRA (rank ``r_lora`` on every expert's ``q/k/v/o_proj`` and ``gate/up/down_proj``): adapters ``A (r x in)``
and ``B (out x r)`` train; the base weights are frozen (no gradient, no optimizer state) and still held (and,
under FSDP, sharded). Other parameter groups train only when named in ``trainable_groups``.

The peak is a maximum over moments of the step, each the resident memory (parameters, optimizer state,
DDP buckets, the FSDP root, the batch on the device) plus what that moment adds:

- ``frame_encoding`` (when the step encodes frames with the frozen tokenizer): the vision tower's
  activations, the batch copies and the tokenizer's working memory for ``B x history_frames`` frames;
- ``forward_end``: all activations, the weight copies, the batch copies and the heads' working memory;
- ``recompute`` (activation checkpointing): the checkpointed activations plus one MoT layer recomputed;
- ``backward_end``: all gradients (and, under FSDP, the root's unsharded gradients).

Gradients are freed between steps (``zero_grad(set_to_none=True)``, as the trainer does), so they never
coexist with the activations of a forward; a point in the middle of backward holds part of both and is
bounded by the larger end. What is not modelled is listed in :attr:`MemoryPlan.assumptions`.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from f1.errors import ConfigError
from f1.model.config import F1Config
from f1.model.f1_model import PARAMETER_GROUPS, F1Model
from f1.model.presets import preset, preset_names

__all__ = [
    "ACTIVATION_FORMULA",
    "LORA_TARGETS",
    "PRECISIONS",
    "STRATEGIES",
    "ActivationMeasurement",
    "MemoryPlan",
    "activation_units",
    "measure_activations",
    "plan_memory",
    "training_batch",
]

Strategy = Literal["ddp", "fsdp"]
Precision = Literal["bf16", "fp32"]
STRATEGIES: tuple[str, ...] = ("ddp", "fsdp")
PRECISIONS: tuple[str, ...] = ("bf16", "fp32")
#: The expert projections LoRA adapts (peft's ``target_modules``).
LORA_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: How a calibration forward computes: ``fp32``, or ``bf16_weights`` (bf16 weights, no autocast, as FSDP2's
#: mixed precision computes on its gathered bf16 parameters). bf16 plans use ``bf16_weights`` activations
#: also for DDP's ``precision: bf16`` (autocast over fp32 weights), whose saved activations are bf16 alike
#: (autocast's weight copies are added by formula).
CALIBRATION_MODES: tuple[str, ...] = ("fp32", "bf16_weights")
GIB = 2**30

ACTIVATION_FORMULA = """\
activations(target, B) = B * sum over sites s of rate[s] * units[s](target)
  rate[s] = bytes saved at site s in one training forward of the calibration model / (B_cal * units[s](cal))
  units per sample (n_e tokens and w_e, m_e width and MLP width of expert e; H, Hkv, D heads and head dim;
  L all trunk tokens; sums over the layers where the module is built):
    trunk.norms       = sum_layers sum_e (norms built) * n_e * w_e
    trunk.qkv         = sum_layers sum_e (q/k/v built) * n_e * w_e
    trunk.o_proj      = sum_layers sum_e n_e * H * D
    trunk.mlp_in      = sum_layers sum_e (gate/up built) * n_e * w_e
    trunk.mlp_hidden  = sum_layers sum_e n_e * m_e
    trunk.attention   = sum_layers L * (2 H + 2 Hkv) * D      (q, k, v, output kept by the fused kernel)
    trunk.final_norm  = sum_e n_e * w_e
    trunk.mask        = L^2                                   (one additive mask, shared by all layers)
    trunk.rotary      = L * D                                 (cos and sin, shared by all layers)
    vision.<module>   = cameras * sum over the tower's modules at that path of their input's numel
    heads             = gen_tokens * (w_gen + vocab)          (next-scale head and cross-entropy)
    history           = history_layers * frames * cells * w_gen  (the history encoder's frame mixer)
    rest              = sum_e n_e * w_e                       (projector, embeddings, adapters, ...)
  with checkpointing per MoT layer, the trunk.* layer sites are replaced by each layer's inputs
  (sum_layers sum_e n_e * w_e * 4 bytes, 2 under FSDP bf16) and one layer is recomputed at a time.
working memory (measured the same way, bytes per unit):
    batch_copies      per sample: cameras * 3 * H_img^2 + (frames + 1) * 3 * H_vq * W_vq
    frame_encoding    per frame:  tokenizer channels * H_vq * W_vq, for B * history_frames frames
    heads_working     per sample: sum_e n_e * w_e + gen_tokens * vocab"""


# ------------------------------------------------------------------------------------------ validation


def _check_int(where: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where}: expected an int >= {low}, received {value!r}")
    return value


def _check_bool(where: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected a bool, received {value!r}")
    return value


def _check_choice(where: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{where}: expected one of {list(choices)}, received {value!r}")
    return value


def _resolve_config(where: str, config: object) -> F1Config:
    if isinstance(config, F1Config):
        return config
    if isinstance(config, str):
        if config not in preset_names():
            raise ConfigError(
                f"{where}: expected an F1Config or a preset in {list(preset_names())}, received {config!r}"
            )
        return preset(config)
    raise ConfigError(f"{where}: expected an F1Config or a preset name, received {type(config).__name__}")


def _check_groups(where: str, groups: object) -> tuple[str, ...]:
    if isinstance(groups, str) or not isinstance(groups, Sequence):
        raise ConfigError(f"{where}: expected a sequence of parameter groups, received {groups!r}")
    for group in groups:
        if group not in PARAMETER_GROUPS:
            raise ConfigError(f"{where}: expected groups among {list(PARAMETER_GROUPS)}, received {group!r}")
    return tuple(groups)


def _check_generation_scales(config: F1Config, value: object, where: str = "generation_scales") -> int | None:
    if value is None:
        return None
    total = config.generation.vqvae_scales
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= total:
        raise ConfigError(
            f"{where}: expected None or an int in [1, {total}] (the VQ-VAE's scales), received {value!r}"
        )
    return value


def default_trainable_groups(lora_rank: int | None) -> tuple[str, ...]:
    """Groups whose own weights train by default: all but the frozen tokenizer (stages II and III), or
    none with LoRA (only the adapters train)."""
    return () if lora_rank is not None else tuple(g for g in PARAMETER_GROUPS if g != "tokenizer")


# --------------------------------------------------------------------------------------- the meta model


def _meta_model(config: F1Config) -> F1Model:
    with torch.device("meta"):
        return F1Model(config)


_LAYER = re.compile(r"^trunk\.experts\.(\w+)\.layers\.(\d+)(?:\.(.*))?$")
_BLOCK = re.compile(r"^understanding\.vision\.backbone\.blocks\.(\d+)(?:\.(.*))?$")


@dataclass(frozen=True)
class _Param:
    """One parameter (or one LoRA adapter matrix) as the plan sees it."""

    numel: int
    dim0: int
    trainable: bool
    unit: str  # "layer.<i>", "block.<i>", "root" or "whole" (left unsharded: the frozen tokenizer)
    cast: bool  # a Linear/Conv weight or bias that bf16 autocast copies
    vision: bool

    def sharded(self, world_size: int) -> int:
        """Elements on one rank under FSDP2, which pads dim 0 to a multiple of the world size (all of them
        for a parameter FSDP2 leaves whole)."""
        if self.unit == "whole":
            return self.numel
        if self.dim0 == 0:
            return 0
        return math.ceil(self.dim0 / world_size) * (self.numel // self.dim0)


def _unit_finder(model: F1Model) -> Callable[[str], str]:
    """``unit_of(name)`` for a parameter or module name: the FSDP2 unit that holds it, as
    :func:`f1.train.distributed.shard_with_fsdp` shards the model (``model.shard_units()``: ``layer.<i>``
    for the trunk's layers, ``block.<i>`` for the vision blocks; ``whole`` for ``unsharded_modules()``;
    ``root`` for the rest)."""
    paths = {id(module): name for name, module in model.named_modules()}
    layers = model.config.trunk.n_layers
    prefixes: dict[str, str] = {}
    for index, unit in enumerate(model.shard_units()):
        label = f"layer.{index}" if index < layers else f"block.{index - layers}"
        prefixes.update({paths[id(module)]: label for module in unit})
    prefixes.update({paths[id(module)]: "whole" for module in model.unsharded_modules()})

    def unit_of(name: str) -> str:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            label = prefixes.get(".".join(parts[:end]))
            if label is not None:
                return label
        return "root"

    return unit_of


def _parameter_layout(
    model: F1Model, lora_rank: int | None, trainable_groups: tuple[str, ...]
) -> list[_Param]:
    """Every parameter of ``model`` (plus the LoRA adapters it would get) with its FSDP unit."""
    _unit_of = _unit_finder(model)
    group_of = {id(p): g for g, params in model.parameter_groups().items() for p in params}
    tokenizer = model.generation.tokenizer if model.generation is not None else None
    in_tokenizer = {id(m) for m in tokenizer.modules()} if tokenizer is not None else set()
    cast_ids: set[int] = set()
    vision_ids = {id(p) for p in model.understanding.vision.parameters()}
    lora_targets: dict[str, nn.Linear] = {}
    for name, module in model.named_modules():
        convolution_or_linear = isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)
        if convolution_or_linear and id(module) not in in_tokenizer:
            cast_ids.update(id(p) for p in module.parameters(recurse=False))
        if lora_rank is not None and _is_lora_target(name, module):
            lora_targets[name] = module
    frozen_by_lora = {id(m.weight) for m in lora_targets.values()}
    layout = []
    for name, param in model.named_parameters():
        trainable = (
            param.requires_grad
            and group_of[id(param)] in trainable_groups
            and id(param) not in frozen_by_lora
        )
        dim0 = param.shape[0] if param.ndim else 1
        layout.append(
            _Param(
                param.numel(), dim0, trainable, _unit_of(name), id(param) in cast_ids, id(param) in vision_ids
            )
        )
    for name, linear in lora_targets.items():
        assert lora_rank is not None
        unit = _unit_of(name)
        layout.append(_Param(lora_rank * linear.in_features, lora_rank, True, unit, True, False))  # A
        layout.append(_Param(linear.out_features * lora_rank, linear.out_features, True, unit, True, False))
    return layout


# ----------------------------------------------------------------------------------- activation units


def _training_spec_lengths(model: F1Model, generation_scales: int | None) -> dict[str, tuple[str, int]]:
    """``{segment: (expert, tokens)}`` of the training pass's attention spec."""
    config = model.config
    num_scales = 1
    if config.has_foresight:
        num_scales = generation_scales or config.generation.train_scales or config.generation.vqvae_scales
    spec = model.attention_spec(num_scales)
    return {name: (spec.segment(name).expert, spec.segment(name).length) for name in spec.names}


def _vision_units(model: F1Model) -> dict[str, float]:
    """Per image: the numel of each vision module's first input, summed per site (a meta-device forward)."""
    vision = model.understanding.vision
    sites: dict[str, float] = {}
    names = {module: name for name, module in vision.backbone.named_modules()}

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor):
            site = _vision_site(
                "understanding.vision.backbone." + names[module]
                if names[module]
                else "understanding.vision.backbone"
            )
            sites[site] = sites.get(site, 0.0) + args[0].numel()

    handles = [m.register_forward_pre_hook(hook) for m in vision.backbone.modules()]
    try:
        size = model.config.vision.image_size
        with torch.no_grad():
            vision(torch.empty(1, 3, size, size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return sites


def activation_units(config: F1Config, *, generation_scales: int | None = None) -> dict[str, float]:
    """Units of every activation site per sample at ``config`` (see :data:`ACTIVATION_FORMULA`), from the
    model built on the meta device; keys ``trunk.*``, ``vision.*``, ``heads``, ``rest``, the per-layer
    ``layer.<i>`` sums of the trunk's layer sites, and the working-memory units ``batch_copies``,
    ``frame_encoding`` (per frame), ``frames_per_sample`` and ``heads_working``."""
    config = _resolve_config("config", config)
    generation_scales = _check_generation_scales(config, generation_scales)
    return _activation_units(_meta_model(config), generation_scales)


def _activation_units(model: F1Model, generation_scales: int | None) -> dict[str, float]:
    config = model.config
    trunk = config.trunk
    lengths = _training_spec_lengths(model, generation_scales)
    tokens = {e: 0 for e in model.trunk.experts}
    for expert, length in lengths.values():
        tokens[expert] += length
    total_tokens = sum(tokens.values())
    heads, kv, d = trunk.n_heads, trunk.n_kv_heads, trunk.head_dim
    units: dict[str, float] = {k: 0.0 for k in _TRUNK_SITES}
    token_width = 0.0
    for name, expert in model.trunk.experts.items():
        n, width = tokens[name], expert.config.width
        token_width += n * width
        if getattr(expert, "norm", None) is not None:
            units["trunk.final_norm"] += n * width
        for index, layer in enumerate(expert.layers):
            built = dict(layer.named_children())
            attn = dict(built["self_attn"].named_children()) if "self_attn" in built else {}
            mlp = dict(built["mlp"].named_children()) if "mlp" in built else {}
            per_layer = {
                "trunk.norms": sum(k in built for k in ("input_layernorm", "post_attention_layernorm"))
                * n
                * width,
                "trunk.qkv": sum(k in attn for k in ("q_proj", "k_proj", "v_proj")) * n * width,
                "trunk.o_proj": ("o_proj" in attn) * n * heads * d,
                "trunk.mlp_in": sum(k in mlp for k in ("gate_proj", "up_proj")) * n * width,
                "trunk.mlp_hidden": ("down_proj" in mlp) * n * expert.config.mlp_width,
            }
            for site, value in per_layer.items():
                units[site] += value
                units[f"layer.{index}.{site}"] = units.get(f"layer.{index}.{site}", 0.0) + value
    for index in range(trunk.n_layers):
        units["trunk.attention"] += total_tokens * (2 * heads + 2 * kv) * d
        units[f"layer.{index}.trunk.attention"] = float(total_tokens * (2 * heads + 2 * kv) * d)
        units[f"layer.{index}.inputs"] = sum(
            tokens[e] * x.config.width for e, x in model.trunk.experts.items() if index < len(x.layers)
        )
    units["trunk.mask"] = float(total_tokens**2)
    units["trunk.rotary"] = float(total_tokens * d)
    for site, value in _vision_units(model).items():
        units[site] = value * len(config.cameras)
    gen_tokens = lengths["gen"][1] if "gen" in lengths and config.has_foresight else 0
    vocab = config.generation.vqvae.vocab_size
    units["heads"] = float(gen_tokens * (trunk.generation_width + vocab))
    generation = config.generation
    units["history"] = float(
        generation.history_layers
        * generation.history_frames
        * math.prod(generation.history_grid)
        * trunk.generation_width
        if config.has_history
        else 0.0
    )
    units["rest"] = token_width
    vq = config.generation.vqvae
    vq_pixels = vq.image_size[0] * vq.image_size[1]
    frames = config.generation.history_frames if config.has_history else 0
    future = 1 if config.has_foresight else 0
    image = config.vision.image_size
    units["batch_copies"] = float(len(config.cameras) * 3 * image * image + (frames + future) * 3 * vq_pixels)
    units["frame_encoding"] = float(vq.ch * vq_pixels) if frames else 0.0
    units["frames_per_sample"] = float(frames)
    units["heads_working"] = token_width + gen_tokens * vocab
    return units


_TRUNK_SITES = (
    "trunk.norms",
    "trunk.qkv",
    "trunk.o_proj",
    "trunk.mlp_in",
    "trunk.mlp_hidden",
    "trunk.attention",
    "trunk.final_norm",
    "trunk.mask",
    "trunk.rotary",
)
#: The trunk sites each MoT layer holds (what checkpointing drops and recomputes one layer at a time).
_LAYER_SITES = _TRUNK_SITES[:6]
_OTHER_SITES = ("heads", "history", "rest")


def _vision_site(path: str) -> str:
    block = _BLOCK.match(path)
    if block:
        return "vision.block" + ("." + block.group(2) if block.group(2) else "")
    rest = path.removeprefix("understanding.vision.backbone")
    return "vision.backbone" + rest if rest else "vision.backbone"


_PROBE_PART = re.compile(r"\.(base_layer|lora_A|lora_B)$")


def _site_of(path: str, foresight: bool) -> str:
    """The activation site of a tensor saved while module ``path`` was the innermost one running."""
    path = _PROBE_PART.sub("", path)
    layer = _LAYER.match(path)
    if layer:
        sub = layer.group(3) or ""
        if sub in ("input_layernorm", "post_attention_layernorm"):
            return "trunk.norms"
        if sub in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            return "trunk.qkv"
        if sub == "self_attn.o_proj":
            return "trunk.o_proj"
        if sub in ("mlp.gate_proj", "mlp.up_proj"):
            return "trunk.mlp_in"
        return "trunk.mlp_hidden"  # the GeGLU's own ops and down_proj
    if re.match(r"^trunk\.experts\.\w+\.norm$", path):
        return "trunk.final_norm"
    if path == "trunk":
        return "trunk.attention"  # refined into mask/rotary by the ledger
    if path.startswith("understanding.vision.backbone"):
        return _vision_site(path)
    if path.startswith("understanding.vision"):
        return "vision.backbone"
    if foresight and (path == "" or path.startswith("generation.head")):
        return "heads"
    if path.startswith("generation.history"):
        return "history"
    return "rest"


# ------------------------------------------------------------------------------------ the measurement


def training_batch(config: F1Config, batch_size: int, *, seed: int = 0) -> dict[str, Any]:
    """A synthetic training batch of ``batch_size`` samples for ``config``, shaped as the data pipeline
    yields it (:class:`f1.data.WindowedDataset`): float32 images in [0, 1] of ``vision.image_size`` per
    camera, the foresight camera's history ``(B, frames, 3, H, W)`` and future frame, raw state and an
    action chunk of the first embodiment, instructions."""
    config = _resolve_config("config", config)
    batch_size = _check_int("batch_size", batch_size)
    g = torch.Generator().manual_seed(seed)
    size = config.vision.image_size
    embodiment = config.embodiments[0]
    batch: dict[str, Any] = {
        f"observation.images.{camera}": torch.rand(batch_size, 3, size, size, generator=g)
        for camera in config.cameras
    }
    batch["observation.state"] = torch.randn(batch_size, embodiment.state_dim, generator=g)
    batch["action"] = torch.randn(batch_size, config.action.chunk_size, embodiment.action_dim, generator=g)
    batch["action_is_pad"] = torch.zeros(batch_size, config.action.chunk_size, dtype=torch.bool)
    batch["task"] = ["put the red cube in the green bowl"] * batch_size
    batch["embodiment"] = [embodiment.name] * batch_size
    if config.has_history:
        frames = config.generation.history_frames
        batch["history"] = torch.rand(batch_size, frames, 3, size, size, generator=g)
    if config.has_foresight:
        batch["future_image"] = torch.rand(batch_size, 3, size, size, generator=g)
    return batch


def batch_bytes(batch: Mapping[str, Any]) -> int:
    """Bytes of the tensors of ``batch`` (what moving it to the device allocates)."""
    return sum(v.numel() * v.element_size() for v in batch.values() if isinstance(v, torch.Tensor))


class _LoRAProbe(nn.Module):
    """peft's LoRA Linear layout, for measuring what it saves: ``base(x) + B(A(x)) * alpha / r``."""

    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__()
        self.base_layer = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, rank, bias=False).to(base.weight.dtype)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False).to(base.weight.dtype)
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.lora_B(self.lora_A(x))


def _is_lora_target(name: str, module: nn.Module) -> bool:
    """One of an expert layer's projections that LoRA adapts."""
    return (
        isinstance(module, nn.Linear) and bool(_LAYER.match(name)) and name.rsplit(".", 1)[-1] in LORA_TARGETS
    )


def _apply_lora_probes(model: F1Model, rank: int) -> None:
    targets = [(name, module) for name, module in model.named_modules() if _is_lora_target(name, module)]
    for name, module in targets:
        parent_name, child = name.rsplit(".", 1)
        setattr(model.get_submodule(parent_name), child, _LoRAProbe(module, rank))


class _Saved:
    """What the pack hook returns instead of the tensor: alive exactly as long as autograd keeps it."""

    __slots__ = ("__weakref__", "layer", "order", "site", "tensor")

    def __init__(self, tensor: torch.Tensor, site: str, layer: int | None, order: int) -> None:
        self.tensor, self.site, self.layer, self.order = tensor, site, layer, order


class _ParameterCasts(TorchDispatchMode):
    """Catches the copies of parameters that autocast (or ``.float()``) makes, keeping them alive so that
    their storages cannot be reused by activations while the ledger classifies (measurement only)."""

    def __init__(self, parameters: set[int]) -> None:
        super().__init__()
        self.parameters = parameters
        self.copies: dict[int, torch.Tensor] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if (
            func is torch.ops.aten._to_copy.default
            and isinstance(args[0], torch.Tensor)
            and args[0].untyped_storage().data_ptr() in self.parameters
            and isinstance(out, torch.Tensor)
        ):
            self.copies[out.untyped_storage().data_ptr()] = out
        return out


@contextlib.contextmanager
def _module_paths(model: nn.Module) -> Iterator[Callable[[], tuple[str, int | None]]]:
    """Track the innermost running module's path and the last MoT layer index entered."""
    names = {module: name for name, module in model.named_modules()}
    stack: list[str] = []
    layer: list[int | None] = [None]

    def pre(module: nn.Module, args: Any) -> None:
        name = names[module]
        stack.append(name)
        match = _LAYER.match(name)
        if match:
            layer[0] = int(match.group(2))

    def post(module: nn.Module, args: Any, output: Any) -> None:
        stack.pop()

    handles = [m.register_forward_pre_hook(pre) for m in model.modules()]
    handles += [m.register_forward_hook(post) for m in model.modules()]
    try:
        yield lambda: (stack[-1] if stack else "", layer[0] if stack and stack[-1] == "trunk" else None)
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The profiler's native start/stop lines go to file descriptor 2; keep them off the terminal."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass(frozen=True)
class ActivationMeasurement:
    """The bytes one training forward saves for backward at a calibration config, by site, and the
    working memory it holds beyond them, with the units that turn them into rates.

    Attributes:
        config_name: the calibration config's name (e.g. ``"tiny"``).
        batch_size: samples of the measured forward.
        mode: ``"fp32"`` or ``"bf16_weights"`` (see :data:`CALIBRATION_MODES`).
        site_bytes: bytes saved per site (alive when the forward returned, each storage once).
        weight_copy_bytes: saved bytes that are copies of parameters (autocast's bf16 weights).
        working_bytes: ``batch_copies``, ``frame_encoding``, ``heads_working`` (bytes, measured).
        units: per-sample units of every site (:func:`activation_units`) at the calibration config.
        allocated_at_forward_end: the profiler's count of bytes allocated by the forward and still held
            when it returned (a cross-check of ``saved_bytes + weight_copy_bytes``).
    """

    config_name: str
    batch_size: int
    mode: str
    site_bytes: dict[str, int]
    weight_copy_bytes: int
    working_bytes: dict[str, int]
    units: dict[str, float]
    allocated_at_forward_end: int

    @property
    def saved_bytes(self) -> int:
        """Activation bytes (weight copies excluded)."""
        return sum(self.site_bytes.values())

    def rates(self) -> dict[str, float]:
        """Bytes per unit per sample of every measured site and working-memory term."""
        rates = {}
        for site, value in self.site_bytes.items():
            units = self.units.get(site, 0.0)
            if units > 0:
                rates[site] = value / (self.batch_size * units)
        for name, value in self.working_bytes.items():
            units = self.units.get(name, 0.0)
            if name == "frame_encoding":
                units *= self.units.get("frames_per_sample", 0.0)
            if units > 0:
                rates[name] = value / (self.batch_size * units)
        return rates

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config_name,
            "batch_size": self.batch_size,
            "mode": self.mode,
            "saved_bytes": self.saved_bytes,
            "site_bytes": dict(self.site_bytes),
            "weight_copy_bytes": self.weight_copy_bytes,
            "working_bytes": dict(self.working_bytes),
            "allocated_at_forward_end": self.allocated_at_forward_end,
            "rates": self.rates(),
        }


def _calibration_config(target: F1Config, base: F1Config) -> F1Config:
    """``base`` with the target's structural switches (the code paths a training forward takes)."""
    return base.with_overrides(
        {
            "mode": target.mode,
            "vision.stem": target.vision.stem,
            "generation.frozen": target.generation.frozen,
            "generation.complete_foresight": target.generation.complete_foresight,
            "generation.sampled_foresight": target.generation.sampled_foresight,
            "action.noise_draws": target.action.noise_draws,
            "trunk.attention_backend": "sdpa",  # FlexAttention has no CPU backward
        }
    )


def measure_activations(
    config: F1Config | str,
    batch_size: int = 4,
    *,
    mode: str = "fp32",
    lora_rank: int | None = None,
    trainable_groups: Sequence[str] | None = None,
    generation_scales: int | None = None,
    seed: int = 0,
) -> ActivationMeasurement:
    """Run one training forward of ``config`` on the CPU and measure what it saves and holds.

    A warm-up forward fills the model's caches (rotary tables, masks); then one forward under
    ``saved_tensors_hooks`` records every saved tensor with the innermost module running when it was saved
    (its site); parameters and their copies (caught by a dispatch mode) are set apart; what is still held
    when the forward returns is summed, each storage once. A third forward under the CPU profiler gives
    the working memory: bytes allocated while ``parse`` copies the batch, the peak of the frozen
    tokenizer's frame encoding, and the peak after the trunk (heads and losses) above what the forward
    still holds when it returns.

    Args:
        config: an :class:`F1Config` or preset name; small ones only (this allocates real weights).
        batch_size: samples of the measured forward.
        mode: ``"fp32"`` or ``"bf16_weights"`` (bf16 weights, no autocast).
        lora_rank: emulate peft's LoRA on the experts' projections at this rank (base weights frozen).
        trainable_groups: parameter groups whose own weights train (default as :func:`plan_memory`);
            frozen parts of the prefix save nothing, so this changes what is measured.
        generation_scales: scales teacher-forced (None: the model's training default).
        seed: of the weights and the synthetic batch.
    """
    config = _resolve_config("config", config)
    batch_size = _check_int("batch_size", batch_size)
    mode = _check_choice("mode", mode, CALIBRATION_MODES)
    if lora_rank is not None:
        _check_int("lora_rank", lora_rank)
    groups = (
        default_trainable_groups(lora_rank)
        if trainable_groups is None
        else _check_groups("trainable_groups", trainable_groups)
    )
    generation_scales = _check_generation_scales(config, generation_scales)
    torch.manual_seed(seed)
    model = F1Model(config).train()
    for group, params in model.parameter_groups().items():
        if group not in groups:
            for param in params:
                param.requires_grad_(False)
    if lora_rank is not None:
        _apply_lora_probes(model, lora_rank)
    if mode == "bf16_weights":
        model.to_precision(torch.bfloat16)
    batch = training_batch(config, batch_size, seed=seed)

    def forward() -> dict[str, torch.Tensor]:
        return model(batch, generation_scales=generation_scales)

    forward()  # warm-up: caches that persist across steps are not activations
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    inputs = {v.untyped_storage().data_ptr() for v in batch.values() if isinstance(v, torch.Tensor)}
    live: weakref.WeakSet[_Saved] = weakref.WeakSet()
    counter = [0]
    foresight = config.has_foresight
    casts = _ParameterCasts(parameters)
    with _module_paths(model) as where:

        def pack(tensor: torch.Tensor) -> _Saved:
            path, layer = where()
            counter[0] += 1
            handle = _Saved(tensor, _site_of(path, foresight), layer, counter[0])
            live.add(handle)
            return handle

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda handle: handle.tensor), casts:
            losses = forward()
    handles = list(live)
    site_bytes, copy_bytes = _classify(handles, parameters, inputs, set(casts.copies), config)
    del losses, handles  # frees the graph: the saved tensors and the handles go with it
    casts.copies.clear()
    working, at_end = _working_memory(model, forward)
    units = _activation_units(_meta_model(config), generation_scales)
    return ActivationMeasurement(
        config_name=config.name,
        batch_size=batch_size,
        mode=mode,
        site_bytes=site_bytes,
        weight_copy_bytes=copy_bytes,
        working_bytes=working,
        units=units,
        allocated_at_forward_end=at_end,
    )


def _classify(
    handles: list[_Saved], parameters: set[int], inputs: set[int], copies: set[int], config: F1Config
) -> tuple[dict[str, int], int]:
    """Bytes per site of the live saved storages (each once, at its first saver), and of weight copies."""
    first: dict[int, _Saved] = {}
    layers: dict[int, set[int | None]] = {}
    sizes: dict[int, int] = {}
    for handle in sorted(handles, key=lambda h: h.order):
        storage = handle.tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in parameters or ptr in inputs or storage.nbytes() == 0:
            continue
        first.setdefault(ptr, handle)
        sizes[ptr] = storage.nbytes()
        layers.setdefault(ptr, set()).add(handle.layer)
    site_bytes: dict[str, int] = {}
    copy_bytes = 0
    for ptr, handle in first.items():
        if ptr in copies:
            copy_bytes += sizes[ptr]
            continue
        site = handle.site
        if site == "trunk.attention" and len(layers[ptr]) > 1:  # one tensor every layer reads
            tensor = handle.tensor
            rotary = tensor.ndim >= 2 and tensor.shape[-1] == config.trunk.head_dim
            site = "trunk.rotary" if rotary else "trunk.mask"
        site_bytes[site] = site_bytes.get(site, 0) + sizes[ptr]
    return site_bytes, copy_bytes


def _working_memory(model: F1Model, forward: Callable[[], Any]) -> tuple[dict[str, int], int]:
    """Working memory of one forward from the CPU profiler's allocation events (see
    :func:`measure_activations`), and the bytes the forward still holds when it returns."""
    from torch.profiler import ProfilerActivity, profile, record_function

    def labelled(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with record_function(label):
                return function(*args, **kwargs)

        return run

    patched: list[tuple[Any, str, str]] = [(model, "parse", "parse"), (model.trunk, "forward", "trunk")]
    if model.generation is not None:
        patched.append((model.generation, "history_tokens", "history_tokens"))
    for owner, attribute, label in patched:  # instance attributes shadow the methods until deleted
        setattr(owner, attribute, labelled(f"memory_plan:{label}", getattr(owner, attribute)))
    try:
        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            with record_function("memory_plan:step"):
                losses = forward()
            del losses
    finally:
        for owner, attribute, _ in patched:
            delattr(owner, attribute)
    events = list(prof.profiler.kineto_results.events())  # type: ignore[union-attr]
    allocations = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    ranges: dict[str, list[tuple[int, int]]] = {}
    for event in events:
        if event.name().startswith("memory_plan:"):
            ranges.setdefault(event.name().removeprefix("memory_plan:"), []).append(
                (event.start_ns(), event.end_ns())
            )
    times = [time for time, _ in allocations]
    running = list(itertools.accumulate(nbytes for _, nbytes in allocations))

    def held_at(time: int) -> int:
        index = bisect.bisect_right(times, time)
        return running[index - 1] if index else 0

    def peak_in(start: int, end: int) -> int:
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        return max([held_at(start), *running[lo:hi]])

    step_start, step_end = ranges["step"][0]
    at_end = held_at(step_end) - held_at(step_start)
    parse_start, parse_end = ranges["parse"][0]
    working = {"batch_copies": max(held_at(parse_end) - held_at(parse_start), 0)}
    if "history_tokens" in ranges:
        start, end = max(ranges["history_tokens"], key=lambda r: r[1] - r[0])
        working["frame_encoding"] = max(peak_in(start, end) - held_at(start), 0)
    trunk_end = max(end for _, end in ranges["trunk"])
    tail = peak_in(trunk_end, step_end) - held_at(step_start)
    working["heads_working"] = max(tail - at_end - working["batch_copies"], 0)
    return working, at_end


# ---------------------------------------------------------------------------------------------- the plan


@functools.lru_cache(maxsize=32)
def _cached_measurement(
    config_json: str,
    batch_size: int,
    mode: str,
    lora_rank: int | None,
    groups: tuple[str, ...],
    generation_scales: int | None,
) -> ActivationMeasurement:
    return measure_activations(
        F1Config.from_json(config_json),
        batch_size,
        mode=mode,
        lora_rank=lora_rank,
        trainable_groups=groups,
        generation_scales=generation_scales,
    )


#: What each row of the table holds, as the reader can check it (``N``, ``T``, ``S``, ``p``: see the module).
ROW_FORMULAS: dict[str, dict[str, str]] = {
    "ddp": {
        "parameters": "4 B x N (fp32 master weights)",
        "gradients": "4 B x T (fp32)",
        "optimizer": "8 B x T (AdamW: two fp32 moments)",
        "activations": "saved for backward: measured, scaled (formula below)",
        "ddp_buckets": "4 B x T: DDP's flat gradient buckets (world size > 1)",
        "weight_copies": "2 B x C: autocast's bf16 copy of each Linear/Conv weight, kept for backward",
    },
    "fsdp": {
        "parameters": "4 B x S(N) (fp32 sharded master weights; the frozen tokenizer whole on every rank)",
        "gradients": "4 B x S(T) (fp32, reduce-scattered)",
        "optimizer": "8 B x S(T) (AdamW: two fp32 moments)",
        "activations": "saved for backward: measured, scaled (formula below)",
        "fsdp_root": "p x N_root: the root unit gathered, kept until backward ends",
        "fsdp_units_forward": "2 p x U: the running unit and the prefetched one",
        "fsdp_units_backward": "2 p x U + 2 (p + r) x U_T: params and unsharded grads of two units",
        "fsdp_root_gradients": "(p + r) x T_root: the root's unsharded grads until it reduces",
    },
}
_COMMON_ROWS = {
    "batch": "the batch on the device (float32 frames)",
    "batch_copies": "the model's copies of the batch (parse), measured",
    "frame_encoding": "frozen tokenizer encoding B x frames frames, measured",
    "heads_working": "heads and losses beyond what they save, measured",
    "recompute": "one MoT layer's activations, recomputed in backward",
}
_PHASES = {
    "frame_encoding": (
        "parameters",
        "optimizer",
        "ddp_buckets",
        "fsdp_root",
        "batch",
        "activations_vision",
        "weight_copies_vision",
        "batch_copies",
        "frame_encoding",
        "fsdp_units_forward",
    ),
    "forward_end": (
        "parameters",
        "optimizer",
        "ddp_buckets",
        "fsdp_root",
        "batch",
        "activations",
        "weight_copies",
        "batch_copies",
        "heads_working",
        "fsdp_units_backward",
    ),
    "recompute": (
        "parameters",
        "optimizer",
        "ddp_buckets",
        "fsdp_root",
        "batch",
        "activations",
        "weight_copies",
        "recompute",
        "fsdp_units_backward",
    ),
    "backward_end": (
        "parameters",
        "optimizer",
        "ddp_buckets",
        "fsdp_root",
        "batch",
        "gradients",
        "fsdp_root_gradients",
        "fsdp_units_backward",
    ),
}


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per rank of one training step (see the module docstring for the accounting).

    Attributes:
        config_name, strategy, world_size, batch_size (samples per rank per forward), lora_rank,
        activation_checkpointing, precision, trainable_groups, frames_encoded: what was planned.
        parameters, gradients, optimizer, activations: bytes per rank of each category.
        other: the other terms by name (``ddp_buckets``, ``weight_copies``, ``fsdp_root``,
            ``fsdp_units_forward``, ``fsdp_units_backward``, ``fsdp_root_gradients``, ``batch``,
            ``batch_copies``, ``frame_encoding``, ``heads_working``, ``recompute``; those that apply).
        phases: bytes held at each moment of the step (:data:`_PHASES`); the peak is their maximum.
        counts: numels (``parameters``, ``trainable``, ``lora``, ``cast``, ``root``, ``root_trainable``,
            ``largest_unit``, ``largest_unit_trainable``, ``units``).
        activation_sites: bytes per activation site at the target (before checkpointing).
        calibration: the measurement the activations were scaled from, and the sites without one.
        assumptions: what the numbers assume and what they leave out.
        activation_formula: :data:`ACTIVATION_FORMULA`.
    """

    config_name: str
    strategy: str
    world_size: int
    batch_size: int
    lora_rank: int | None
    activation_checkpointing: bool
    precision: str
    trainable_groups: tuple[str, ...]
    frames_encoded: bool
    parameters: int
    gradients: int
    optimizer: int
    activations: int
    other: dict[str, int]
    phases: dict[str, int]
    counts: dict[str, int]
    activation_sites: dict[str, int]
    calibration: dict[str, Any]
    assumptions: tuple[str, ...]
    activation_formula: str = ACTIVATION_FORMULA

    @property
    def total(self) -> int:
        """The peak: the largest phase."""
        return max(self.phases.values())

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda name: self.phases[name])

    def categories(self) -> dict[str, int]:
        """Every category and other term with its bytes, in table order."""
        rows = {
            "parameters": self.parameters,
            "gradients": self.gradients,
            "optimizer": self.optimizer,
            "activations": self.activations,
        }
        rows.update(self.other)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON types only: the inputs, every category, the phases, the total and what they assume."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["trainable_groups"] = list(self.trainable_groups)
        out["assumptions"] = list(self.assumptions)
        out["total"] = self.total
        out["peak_phase"] = self.peak_phase
        out["row_formulas"] = {
            k: v for k, v in _row_formulas(self.strategy).items() if k in self.categories()
        }
        return out

    def table(self, unit: str = "GiB") -> str:
        """The plan as a text table in ``unit`` (``"GiB"`` or ``"MiB"``) per rank, rows with formulas."""
        scale = {"GiB": GIB, "MiB": 2**20}.get(unit)
        if scale is None:
            raise ConfigError(f"unit: expected 'GiB' or 'MiB', received {unit!r}")
        lora = f", LoRA rank {self.lora_rank}" if self.lora_rank is not None else ""
        checkpointing = ", activation checkpointing" if self.activation_checkpointing else ""
        counts = self.counts
        lines = [
            f"{self.config_name}: {self.strategy} on {self.world_size} rank(s), batch {self.batch_size} "
            f"per rank, {self.precision}{checkpointing}{lora}",
            f"N = {counts['parameters']:,} parameters, T = {counts['trainable']:,} trainable"
            + (f" ({counts['lora']:,} LoRA)" if counts["lora"] else "")
            + f", C = {counts['cast']:,} in Linear/Conv weights",
        ]
        if self.strategy == "fsdp":
            lines.append(
                f"FSDP units: {counts['units']} (U = {counts['largest_unit']:,}, U_T = "
                f"{counts['largest_unit_trainable']:,}), root N_root = {counts['root']:,} "
                f"(T_root = {counts['root_trainable']:,}); p = {2 if self.precision == 'bf16' else 4} B"
            )
        formulas = _row_formulas(self.strategy)
        rows = self.categories()
        width = max(len(name) for name in [*rows, *(f"at {phase}" for phase in self.phases)])
        lines.append(f"  {'':{width}}  {unit + ' per rank':>14}  how")
        for name, value in rows.items():
            lines.append(f"  {name:{width}}  {value / scale:14.2f}  {formulas.get(name, '')}")
        for name, value in self.phases.items():
            marker = "peak" if name == self.peak_phase else ""
            lines.append(f"  {'at ' + name:{width}}  {value / scale:14.2f}  {marker}")
        lines.append("phases (what each moment of the step holds):")
        for name in self.phases:
            terms = [t for t in _PHASES[name] if t in rows or t.endswith("_vision")]
            terms = [t.replace("activations_vision", "vision activations") for t in terms]
            terms = [t.replace("weight_copies_vision", "vision weight copies") for t in terms]
            lines.append(f"  {name}: {' + '.join(t for t in terms if _applies(t, rows))}")
        return "\n".join(lines)


def _applies(term: str, rows: Mapping[str, int]) -> bool:
    if term == "vision weight copies":
        return "weight_copies" in rows
    return term == "vision activations" or term in rows


def _row_formulas(strategy: str) -> dict[str, str]:
    return {**ROW_FORMULAS[strategy], **_COMMON_ROWS}


def plan_memory(
    config: F1Config | str,
    *,
    strategy: Strategy = "ddp",
    world_size: int = 1,
    batch_size: int = 8,
    lora_rank: int | None = None,
    activation_checkpointing: bool = False,
    precision: Precision = "bf16",
    trainable_groups: Sequence[str] | None = None,
    generation_scales: int | None = None,
    frames_encoded: bool = True,
    calibration: F1Config | str = "tiny",
    calibration_batch_size: int = 4,
) -> MemoryPlan:
    """Bytes per rank of a training step of ``config`` (see the module docstring for every formula).

    Args:
        config: an :class:`~f1.model.F1Config` or a preset name (``"f1-4.2b"``), built on the meta device.
        strategy: ``"ddp"`` or ``"fsdp"`` (FSDP2, one unit per MoT layer and per vision block).
        world_size: ranks (processes, one GPU each); FSDP shards over all of them.
        batch_size: samples per rank per forward (the micro-batch: the global batch / ranks / accumulation).
        lora_rank: LoRA rank on the experts' projections (:data:`LORA_TARGETS`), None for full training.
        activation_checkpointing: keep only each MoT layer's inputs, recompute one layer at a time.
        precision: ``"bf16"`` (DDP: bf16 autocast over fp32 weights; FSDP: bf16 compute, fp32 reduce and
            master weights) or ``"fp32"``.
        trainable_groups: parameter groups (:data:`f1.model.PARAMETER_GROUPS`) whose own weights train;
            None: all but the tokenizer, or none with LoRA (adapters only).
        generation_scales: scales teacher-forced in training (the stage's ``generation_scales``; stages II
            and III use 4); None: the model's default (all).
        frames_encoded: the step encodes history and future frames with the frozen tokenizer (``f1 train``
            on frames); False when they arrive as cached codes (:func:`f1.train.encode_dataset_frames`).
        calibration: the small config whose CPU training forward is measured (its structural switches are
            set to the target's), ``"tiny"`` by default.
        calibration_batch_size: samples of that measured forward.

    Raises:
        ConfigError: for any argument outside its domain, naming it, before anything is built.
    """
    target = _resolve_config("config", config)
    strategy = _check_choice("strategy", strategy, STRATEGIES)
    world_size = _check_int("world_size", world_size)
    batch_size = _check_int("batch_size", batch_size)
    if lora_rank is not None:
        _check_int("lora_rank", lora_rank)
    _check_bool("activation_checkpointing", activation_checkpointing)
    precision = _check_choice("precision", precision, PRECISIONS)
    groups = (
        default_trainable_groups(lora_rank)
        if trainable_groups is None
        else _check_groups("trainable_groups", trainable_groups)
    )
    generation_scales = _check_generation_scales(target, generation_scales)
    _check_bool("frames_encoded", frames_encoded)
    base = _resolve_config("calibration", calibration)
    calibration_batch_size = _check_int("calibration_batch_size", calibration_batch_size)
    if lora_rank is None and not groups:
        raise ConfigError("trainable_groups: nothing would train (no group and no LoRA), received ()")

    model = _meta_model(target)
    layout = _parameter_layout(model, lora_rank, groups)
    cal_config = _calibration_config(target, base)
    cal_scales = (
        None if generation_scales is None else min(generation_scales, cal_config.generation.vqvae_scales)
    )
    mode = "fp32" if precision == "fp32" else "bf16_weights"
    measurement = _cached_measurement(
        cal_config.to_json(), calibration_batch_size, mode, lora_rank, groups, cal_scales
    )
    units = _activation_units(model, generation_scales)
    sites, fallback = _scaled_sites(measurement, units, batch_size)
    rates = measurement.rates()

    trainable = [p for p in layout if p.trainable]
    numel = sum(p.numel for p in layout)
    units_numel: dict[str, int] = {}
    units_trainable: dict[str, int] = {}
    for p in layout:
        units_numel[p.unit] = units_numel.get(p.unit, 0) + p.numel
        units_trainable[p.unit] = units_trainable.get(p.unit, 0) + (p.numel if p.trainable else 0)
    root, root_trainable = units_numel.pop("root", 0), units_trainable.pop("root", 0)
    units_numel.pop("whole", None)  # left whole (and in its own dtype) on every rank
    units_trainable.pop("whole", None)
    largest = max(units_numel, key=lambda u: units_numel[u], default=None)
    counts = {
        "parameters": numel,
        "trainable": sum(p.numel for p in trainable),
        "lora": _lora_numel(model, lora_rank) if lora_rank is not None else 0,
        "cast": sum(p.numel for p in layout if p.cast),
        "root": root,
        "root_trainable": root_trainable,
        "largest_unit": units_numel[largest] if largest else 0,
        "largest_unit_trainable": units_trainable[largest] if largest else 0,
        "units": len(units_numel),
    }

    p_bytes = 2 if precision == "bf16" else 4
    reduce_copy = 4 if p_bytes != 4 else 0
    other: dict[str, int] = {}
    if strategy == "ddp":
        parameters = 4 * numel
        gradients = 4 * counts["trainable"]
        optimizer = 8 * counts["trainable"]
        if world_size > 1:
            other["ddp_buckets"] = 4 * counts["trainable"]
        if precision == "bf16":
            other["weight_copies"] = 2 * counts["cast"]
    else:
        parameters = 4 * sum(p.sharded(world_size) for p in layout)
        gradients = 4 * sum(p.sharded(world_size) for p in trainable)
        optimizer = 8 * sum(p.sharded(world_size) for p in trainable)
        other["fsdp_root"] = p_bytes * root
        other["fsdp_units_forward"] = 2 * p_bytes * counts["largest_unit"]
        other["fsdp_units_backward"] = (
            2 * p_bytes * counts["largest_unit"]
            + 2 * (p_bytes + reduce_copy) * counts["largest_unit_trainable"]
        )
        other["fsdp_root_gradients"] = (p_bytes + reduce_copy) * root_trainable

    activations = sum(sites.values())
    layer_bytes = {
        index: batch_size
        * sum(rates.get(s, 0.0) * units.get(f"layer.{index}.{s}", 0.0) for s in _LAYER_SITES)
        for index in range(target.trunk.n_layers)
    }
    if activation_checkpointing:
        residual = 2 if (strategy == "fsdp" and precision == "bf16") else 4
        inputs = batch_size * residual * sum(units[f"layer.{i}.inputs"] for i in range(target.trunk.n_layers))
        activations = activations - sum(layer_bytes.values()) + round(inputs)
        other["recompute"] = round(max(layer_bytes.values(), default=0.0))
    activations = round(activations)
    sample = training_batch(target, 1)
    other["batch"] = batch_size * batch_bytes(sample)
    other["batch_copies"] = round(batch_size * rates.get("batch_copies", 0.0) * units["batch_copies"])
    encodes = frames_encoded and target.has_history
    if encodes:
        frames = batch_size * units["frames_per_sample"]
        other["frame_encoding"] = round(frames * rates.get("frame_encoding", 0.0) * units["frame_encoding"])
    other["heads_working"] = round(batch_size * rates.get("heads_working", 0.0) * units["heads_working"])

    vision_numel = sum(p.numel for p in layout if p.cast and p.vision)
    values = {
        "parameters": parameters,
        "gradients": gradients,
        "optimizer": optimizer,
        "activations": activations,
        "activations_vision": round(sum(v for k, v in sites.items() if k.startswith("vision."))),
        "weight_copies_vision": 2 * vision_numel if "weight_copies" in other else 0,
        **other,
    }
    phases = {}
    for phase, terms in _PHASES.items():
        if phase == "frame_encoding" and not encodes:
            continue
        if phase == "recompute" and not activation_checkpointing:
            continue
        phases[phase] = sum(values.get(term, 0) for term in terms)

    assumptions = _assumptions(
        target,
        strategy,
        world_size,
        batch_size,
        precision,
        lora_rank,
        groups,
        measurement,
        fallback,
        frames_encoded,
        units,
        activation_checkpointing,
    )
    return MemoryPlan(
        config_name=target.name,
        strategy=strategy,
        world_size=world_size,
        batch_size=batch_size,
        lora_rank=lora_rank,
        activation_checkpointing=activation_checkpointing,
        precision=precision,
        trainable_groups=groups,
        frames_encoded=frames_encoded,
        parameters=parameters,
        gradients=gradients,
        optimizer=optimizer,
        activations=activations,
        other=other,
        phases=phases,
        counts=counts,
        activation_sites={k: round(v) for k, v in sites.items()},
        calibration={**measurement.to_dict(), "fallback_sites": fallback},
        assumptions=assumptions,
    )


def _lora_numel(model: F1Model, rank: int) -> int:
    return sum(
        rank * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if _is_lora_target(name, m)
    )


def _scaled_sites(
    measurement: ActivationMeasurement, units: Mapping[str, float], batch_size: int
) -> tuple[dict[str, float], list[str]]:
    """Bytes per site at the target; sites the calibration model lacks take the mean rate of their part."""
    rates = measurement.rates()
    sites = [k for k in units if k in _TRUNK_SITES or k.startswith("vision.") or k in _OTHER_SITES]
    fallback = []
    scaled: dict[str, float] = {}
    for site in sites:
        if units[site] <= 0:
            continue
        if site in rates:
            rate = rates[site]
        elif measurement.units.get(site, 0.0) > 0:
            rate = 0.0  # the calibration model has this site and saves nothing there
        else:
            part = site.split(".", 1)[0] + "."
            measured = [s for s in measurement.site_bytes if s.startswith(part)]
            total_units = sum(measurement.units.get(s, 0.0) for s in measured)
            rate = (
                sum(measurement.site_bytes[s] for s in measured) / (measurement.batch_size * total_units)
                if total_units
                else 0.0
            )
            fallback.append(site)
        if rate > 0:
            scaled[site] = batch_size * rate * units[site]
    return scaled, fallback


def _assumptions(
    config: F1Config,
    strategy: str,
    world_size: int,
    batch_size: int,
    precision: str,
    lora_rank: int | None,
    groups: tuple[str, ...],
    measurement: ActivationMeasurement,
    fallback: list[str],
    frames_encoded: bool,
    units: Mapping[str, float],
    checkpointing: bool,
) -> tuple[str, ...]:
    trunk = config.trunk
    element = 2 if precision == "bf16" else 4
    tokens = math.isqrt(round(units["trunk.mask"]))
    probabilities = batch_size * trunk.n_heads * tokens**2 * element * trunk.n_layers
    out = [
        "parameters: counted on the meta device (F1Model(config)), so they follow the model code",
        f"trainable: the groups {list(groups)}"
        + (
            f" and LoRA rank {lora_rank} adapters on {list(LORA_TARGETS)} (base weights frozen)"
            if lora_rank
            else ""
        )
        + "; every trainable parameter gets a gradient",
        "optimizer: torch AdamW, two fp32 moments per trainable parameter; gradients set to None between "
        "steps (zero_grad(set_to_none=True)), so they never coexist with a forward's activations",
        f"activations: measured at {measurement.config_name!r} (batch {measurement.batch_size}, "
        f"{measurement.mode}) on the CPU and scaled by the formula; {trunk.n_layers} layers, "
        f"{tokens} trunk tokens per sample",
        "attention: a fused SDPA kernel keeps q, k, v, the output and the log-sum-exp (what the CPU runs); "
        f"a GPU falling back to the math kernel also keeps the softmax: about {probabilities / GIB:.2f} GiB "
        "more per copy at this batch",
    ]
    if fallback:
        out.append(f"sites the calibration model lacks, scaled at their part's mean rate: {fallback}")
    if lora_rank is not None:
        out.append(
            "LoRA activations: measured with peft's layout emulated (base(x) + B(A(x)) * alpha/r, "
            "no dropout) at the calibration model"
        )
    if strategy == "ddp":
        out.append(
            "DDP: one process per rank holds everything; its buckets (gradient_as_bucket_view=False, "
            "torch's default) only when world_size > 1 (the trainer does not wrap one process)"
            + (
                "; bf16 is autocast over fp32 weights (the trainer's precision 'bf16'), its activations "
                "taken from a bf16-weights forward (autocast saves bf16 activations alike; its weight "
                "copies are the weight_copies term)"
                if precision == "bf16"
                else ""
            )
        )
    else:
        out.append(
            "FSDP2: reshard after forward for every unit, the root kept gathered, one unit prefetched, the "
            "frozen tokenizer left whole in fp32 on every rank (F1Model.unsharded_modules); "
            + (
                "mixed precision: bf16 parameters and gradients, fp32 reduce and master weights"
                if precision == "bf16"
                else "fp32 throughout"
            )
            + "; dim 0 of each parameter padded to "
            f"a multiple of {world_size}"
        )
    if checkpointing:
        out.append(
            "checkpointing: per MoT layer (its inputs kept, fp32 under DDP, the compute dtype under "
            "FSDP); the vision tower, heads and history encoder are not checkpointed"
        )
    out.append(
        "the step encodes frames with the frozen tokenizer"
        if frames_encoded and config.has_history
        else "no frame encoding in the step (cached codes, or a mode without history)"
    )
    out.append(
        "not counted: the CUDA context, kernel workspaces (cuBLAS, cuDNN, NCCL buffers), the caching "
        "allocator's reserve and fragmentation, torch.compile's graphs"
    )
    return tuple(out)


# ------------------------------------------------------------------------------------ the command line


def _int_argument(flag: str, text: object, low: int = 1) -> int:
    try:
        value = int(str(text))
    except ValueError:
        raise ConfigError(f"{flag}: expected an int >= {low}, received {text!r}") from None
    if value < low:
        raise ConfigError(f"{flag}: expected an int >= {low}, received {text!r}")
    return value


def run_command(args: Any) -> int:
    """``f1 plan-memory``: check the arguments (they arrive as text, so each bad one gets one line), plan,
    print the table, the formula and the assumptions, and write ``--json`` atomically if asked.

    Raises:
        ConfigError: naming the flag, the expected and the received value, before anything is computed.
    """
    if args.preset is None:
        raise ConfigError(f"--preset: expected one of {list(preset_names())}, received nothing")
    if args.preset not in preset_names():
        raise ConfigError(f"--preset: expected one of {list(preset_names())}, received {args.preset!r}")
    strategy = _check_choice("--strategy", args.strategy, STRATEGIES)
    precision = _check_choice("--precision", args.precision, PRECISIONS)
    world_size = _int_argument("--world-size", args.world_size)
    batch_size = _int_argument("--batch-size", args.batch_size)
    lora = None if args.lora is None else _int_argument("--lora", args.lora)
    config = preset(args.preset)
    scales = None
    if args.generation_scales is not None:
        scales = _int_argument("--generation-scales", args.generation_scales)
        _check_generation_scales(config, scales, "--generation-scales")
    groups = None if not args.trainable else _check_groups("--trainable", list(args.trainable))
    out = args.json
    if out is not None and not out.parent.is_dir():
        raise ConfigError(f"--json: expected a file in an existing folder, {str(out.parent)!r} is not one")
    plan = plan_memory(
        config,
        strategy=strategy,
        world_size=world_size,
        batch_size=batch_size,
        lora_rank=lora,
        activation_checkpointing=bool(args.checkpointing),
        precision=precision,
        trainable_groups=groups,
        generation_scales=scales,
        frames_encoded=not args.cached_frame_codes,
    )
    print(plan.table())
    calibration = plan.calibration
    print(
        f"activations scaled from a measured training forward of {calibration['config']!r} "
        f"(batch {calibration['batch_size']}, {calibration['mode']}): "
        f"{calibration['saved_bytes'] / 2**20:.2f} MiB saved for backward"
    )
    print("activation formula:")
    print(ACTIVATION_FORMULA)
    print("assumptions:")
    for line in plan.assumptions:
        print(f"  - {line}")
    if out is not None:
        partial = out.with_name(out.name + ".partial")
        partial.write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
        os.replace(partial, out)
        print(f"wrote {out}")
    return 0
