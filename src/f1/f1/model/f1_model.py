"""``F1Model``: understanding -> generation (foresight) -> action, the network built from the blocks.

``model(batch) -> {loss name: scalar}`` is the training pass (what the trainer and DDP/FSDP wrap);
:meth:`F1Model.sample` is the inference core, from validated :class:`~f1.model.inputs.PolicyInputs` to a
:class:`Plan`. The robot-facing part (parsing observations once, the history buffer, the action queue,
save/load) is :class:`f1.model.F1Policy`, which holds one of these.

Precision has one boundary: :meth:`F1Model.to_precision` casts every weight but the VQ-VAE tokenizer,
which stays float32 (its nearest-code search is exact only in full precision); the generation part
(:class:`~f1.model.generation.GenerationIO`) converts at the tokenizer's edge, every other module runs in
the trunk's dtype (:attr:`F1Model.dtype`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from f1.errors import ConfigError, InputError
from f1.model.adapters import EmbodimentAdapter
from f1.model.config import F1Config
from f1.model.embodiment import Embodiment, EmbodimentRegistry
from f1.model.generation import GenerationIO
from f1.model.inputs import (
    PolicyInputs,
    check_finite_float,
    check_token_range,
    parse_inputs,
    resize_frames,
)
from f1.model.language import TextTokenizer, build_tokenizer
from f1.model.latency import LatencyRecorder
from f1.model.realtime_chunking import PreviousChunk
from f1.model.trunk_runner import CachedRunner, RecomputingRunner
from f1.model.uga import uga_spec
from f1.model.understanding import UnderstandingEncoder
from f1.model.vision import images_to_unit_float
from flowmatch import (
    flow_matching_loss,
    gaussian_noise,
    interpolate,
    make_time_sampler,
    sample,
    target_velocity,
    valid_entry_mask,
    velocity_from_data_prediction,
)
from mot import (
    COMPILE_MODES,
    AttentionSpec,
    DownstreamCall,
    ExpertConfig,
    KVCache,
    MixtureOfTransformers,
    MoTConfig,
)
from var_foresight import SamplingConfig, next_scale_cross_entropy, sample_next_scales

__all__ = ["EXPERT_GROUPS", "PARAMETER_GROUPS", "F1Model", "Foresight", "Plan", "mot_config"]

#: The parameter groups of :meth:`F1Model.parameter_groups`; stage configs freeze and set rates by name.
PARAMETER_GROUPS: tuple[str, ...] = (
    "vision",
    "understanding",
    "generation",
    "action",
    "tokenizer",
    "embodiment",
)

#: The trunk's experts (``mot`` expert names, in trunk order) and the parameter group each belongs to.
EXPERT_GROUPS: dict[str, str] = {"und": "understanding", "gen": "generation", "act": "action"}


@dataclass
class Foresight:
    """The imagined next frame.

    Attributes:
        indices: per predicted scale, token indices ``(B, h_k * w_k)`` int64.
        image: ``(B, 3, H_g, W_g)`` in [0, 1] decoded from those scales, when requested.
    """

    indices: list[torch.Tensor]
    image: torch.Tensor | None = None


@dataclass
class Plan:
    """One inference call.

    Attributes:
        actions: ``(B, H, A)`` raw (unnormalized) actions of the embodiment.
        embodiment: its name.
        foresight: the imagined next frame (mode ``"f1"``, when requested).
        latency_ms: ``{"total": ms}`` (host wall time of the call, no device synchronization); with
            ``profile=True`` also per module (see :mod:`f1.model.latency`), each synchronized.
    """

    actions: torch.Tensor
    embodiment: str
    foresight: Foresight | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)


def mot_config(config: F1Config) -> MoTConfig:
    """The trunk's :class:`mot.MoTConfig`: experts ``und``, ``act`` and (unless mode ``no_gen``) ``gen``.

    Only the action expert's and (mode ``f1``) the generation expert's hidden states are read (by the
    heads); the others give their keys and values only, so their last layers are keys/values-only
    (``last_layer_kv_only``): ``und`` always, ``gen`` in mode ``history_no_foresight``. Every parameter
    built then gets a gradient from the losses.
    """
    trunk = config.trunk
    experts = {
        "und": ExpertConfig(trunk.understanding_width, trunk.understanding_mlp, last_layer_kv_only=True)
    }
    if config.has_history:
        experts["gen"] = ExpertConfig(
            trunk.generation_width, trunk.generation_mlp, last_layer_kv_only=not config.has_foresight
        )
    experts["act"] = ExpertConfig(trunk.action_width, trunk.action_mlp)
    return MoTConfig(
        n_layers=trunk.n_layers,
        n_heads=trunk.n_heads,
        n_kv_heads=trunk.n_kv_heads,
        head_dim=trunk.head_dim,
        experts=experts,
        rope_base=trunk.rope_base,
        attention_backend=trunk.attention_backend,
    )


@dataclass
class _TrainingPass:
    """One training pass: every segment's hidden states (``hidden["act"]``: the first noise draw's), the
    action segment's of every draw (``action_hidden``) with their target velocities."""

    inputs: PolicyInputs
    hidden: dict[str, torch.Tensor]
    token_targets: list[torch.Tensor]
    action_hidden: list[torch.Tensor]
    flow_targets: list[dict[str, torch.Tensor]]
    num_scales: int


class F1Model(nn.Module):
    """The F1 vision-language-action network.

    Args:
        config: the :class:`~f1.model.F1Config` (e.g. ``preset("tiny")``).
        tokenizer: optional text tokenizer (a :class:`~f1.model.language.TextTokenizer`, or a Gemma
            tokenizer object with ``encode``); by default the one named by ``config.language``.

    Batch keys read by :meth:`forward` (``B`` samples, collated; :meth:`parse` checks them all):

    - ``observation.images.<camera>``: ``(B, 3, H, W)`` float in [0, 1] or uint8, for every configured
      camera, ``H = W = vision.image_size``;
    - ``observation.state``: ``(B, S)`` raw state (``S``: the widest embodiment in the batch);
    - ``action``: ``(B, chunk_size, A)`` raw actions; ``action_is_pad``: ``(B, chunk_size)`` bool, optional;
    - ``task``: ``list[str]`` (or one str) instructions;
    - ``embodiment``: ``list[str]`` or ``str``, optional (default: ``config.default_embodiment``);
    - ``history``: ``(B, T, 3, H, W)`` past frames of the foresight camera, oldest first, the current frame
      last, ``1 <= T <= generation.history_frames`` (modes ``f1`` and ``history_no_foresight``);
      ``history_is_pad``: ``(B, T)`` bool, optional;
    - ``future_image``: ``(B, 3, H, W)`` the frame ``generation.history_stride`` steps ahead (mode ``f1``);
    - ``flow.noise`` ``(B, H, A)`` and ``flow.time`` ``(B,)`` (``(B, D, H, A)`` and ``(B, D)`` for
      ``action.noise_draws = D``), optional, together: the flow's noise and time drawn with the data instead
      of by the model (each sample's randomness then travels with it: 2 processes on halves of a batch train
      exactly as 1 on the whole).

    History and future frames are resized to the VQ-VAE's image size when they differ.
    """

    def __init__(self, config: F1Config, *, tokenizer: Any = None) -> None:
        super().__init__()
        if not isinstance(config, F1Config):
            raise ConfigError(f"config: expected an F1Config, received {type(config).__name__}")
        self.config = config
        self.embodiments = EmbodimentRegistry(config.embodiments)
        self.understanding = UnderstandingEncoder(config)
        self.generation = GenerationIO(config) if config.has_history else None
        self.trunk = MixtureOfTransformers(mot_config(config))
        self.adapters = nn.ModuleDict(
            {
                e.name: EmbodimentAdapter(e, config.trunk.action_width, config.action.time_convention)
                for e in config.embodiments
            }
        )
        self.time_sampler = make_time_sampler(config.action.time_sampler)
        # one ODE step's velocity (adapter in, trunk, adapter out) through torch.compile, when compiled
        self._compiled_velocity: Callable[..., torch.Tensor] | None = None
        self._given_tokenizer = tokenizer
        self._tokenizer: TextTokenizer | None = None
        if config.generation.frozen and self.generation is not None:
            for parameter in self.parameter_groups()["generation"]:
                parameter.requires_grad_(False)

    #: Every loss an F1 model may return (the trainer refuses a stage weighting any other name).
    known_loss_names: tuple[str, ...] = ("flow", "generation")

    # --- structure -----------------------------------------------------------------------------------
    @property
    def loss_names(self) -> tuple[str, ...]:
        """The losses :meth:`forward` returns in this mode: ``("flow", "generation")`` in mode ``f1``,
        ``("flow",)`` otherwise (a stage's weight for the others does not apply)."""
        return self.known_loss_names if self.config.has_foresight else ("flow",)

    @property
    def tokenizer(self) -> TextTokenizer:
        """The text tokenizer (built on first use, so meta-device models need none)."""
        if self._tokenizer is None:
            self._tokenizer = build_tokenizer(self.config.language, self._given_tokenizer)
        return self._tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.trunk.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype every module but the VQ-VAE tokenizer runs in (see :meth:`to_precision`)."""
        return next(self.trunk.parameters()).dtype

    def _generation_io(self) -> GenerationIO:
        """The generation part; callers reach it only in the modes that build it (they check the mode)."""
        assert self.generation is not None, f"mode {self.config.mode!r} builds no generation part"
        return self.generation

    def attention_spec(self, num_scales: int | None = None) -> AttentionSpec:
        """The UGA spec of a pass predicting ``num_scales`` scales (mode ``f1``; ignored otherwise)."""
        history = self.generation.history_length if self.generation is not None else None
        scales = None
        if self.config.has_foresight:
            scales = self._generation_io().scale_tokens(num_scales or self.config.generation.vqvae_scales)
        return uga_spec(
            self.config.mode,
            und_length=self.understanding.length,
            chunk_size=self.config.action.chunk_size,
            history_length=history,
            scale_tokens=scales,
            foresight_length=self.generation.foresight_length if self.generation is not None else None,
        )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Every parameter in exactly one group of :data:`PARAMETER_GROUPS`.

        ``vision``: the timm tower; ``understanding``: projector, language embedding and the understanding
        expert; ``generation``: the generation expert, history encoder, next-scale embedding and head;
        ``action``: the action expert; ``embodiment``: the per-embodiment adapters; ``tokenizer``: the
        frozen VQ-VAE. Groups without parameters (e.g. ``generation`` in mode ``no_gen``) are omitted.
        """
        groups: dict[str, list[nn.Parameter]] = {name: [] for name in PARAMETER_GROUPS}
        groups["vision"] += list(self.understanding.vision.parameters())
        groups["understanding"] += list(self.understanding.projector.parameters())
        groups["understanding"] += list(self.understanding.language.parameters())
        for expert, group in EXPERT_GROUPS.items():
            if expert in self.trunk.experts:
                groups[group] += list(self.trunk.experts[expert].parameters())
        if self.generation is not None:
            groups["tokenizer"] += list(self.generation.tokenizer.parameters())
            parts = (
                self.generation.history,
                self.generation.embedding,
                self.generation.head,
                self.generation.foresight,
            )
            for part in parts:
                if part is not None:
                    groups["generation"] += list(part.parameters())
        groups["embodiment"] += list(self.adapters.parameters())
        return {name: params for name, params in groups.items() if params}

    def shard_units(self) -> list[list[nn.Module]]:
        """The modules that data-parallel sharding (FSDP2) all-gathers together, innermost first: one unit
        per trunk layer (every expert's layer of that depth, which meet in one joint attention, and the
        layer's end: :meth:`mot.MixtureOfTransformers.layer_units`), then one per block of the vision
        tower (when the timm model has ``blocks``). What no unit holds (embeddings, final norms, adapters,
        the generation head, the tokenizer) belongs to the root, the model itself."""
        units: list[list[nn.Module]] = [list(unit) for unit in self.trunk.layer_units()]
        blocks = getattr(self.understanding.vision.backbone, "blocks", None)
        if isinstance(blocks, nn.Sequential | nn.ModuleList):
            units += [[block] for block in blocks]
        return units

    def unsharded_modules(self) -> list[nn.Module]:
        """The modules data-parallel sharding leaves whole on every process, in their own dtype: the frozen
        VQ-VAE tokenizer (it never trains, and its tokens must be the exact ones of its float32 weights,
        also when the rest computes in bf16)."""
        return [self.generation.tokenizer] if self.generation is not None else []

    def set_activation_checkpointing(self, enabled: bool) -> F1Model:
        """Recompute each trunk layer in backward instead of keeping its intermediates (training only;
        :meth:`mot.MixtureOfTransformers.set_activation_checkpointing`); losses and gradients are unchanged.
        Returns ``self``."""
        if not isinstance(enabled, bool):
            raise ConfigError(f"enabled: expected a bool, received {type(enabled).__name__}")
        self.trunk.set_activation_checkpointing(enabled)
        return self

    def to_precision(self, dtype: torch.dtype = torch.bfloat16) -> F1Model:
        """Cast every weight to ``dtype`` but the VQ-VAE tokenizer (it stays float32); returns ``self``."""
        tokenizer = self.generation.tokenizer if self.generation is not None else None
        for module in self.children():
            if module is not self.generation:
                module.to(dtype)
        if self.generation is not None:
            for child in self.generation.children():
                if child is not tokenizer:
                    child.to(dtype)
        return self

    def compile_inference(self, *, mode: str | None = None, dynamic: bool = False) -> F1Model:
        """Run the heavy tensor work through ``torch.compile``; returns ``self``.

        Compiled: the trunk's layers of the prefix, the history and each foresight scale
        (:meth:`mot.MixtureOfTransformers.compile_layers`, while checks, masks and the KV cache stay in
        Python), each ODE step as one region (the adapter's encode, the action expert's read-only call
        prepared once per plan by :meth:`mot.MixtureOfTransformers.prepare_downstream`, the adapter's
        decode; eager with real-time chunking, which needs gradients), the quantizer's next-scale step
        (:meth:`var_foresight.MultiScaleResidualQuantizer.compile_next_scale`), the vision tower and the
        VQ-VAE's encoding of frames (encoder and multi-scale quantizer:
        :meth:`var_foresight.VQVAE.compile_encoding`). The first :meth:`sample` of each input shape pays
        the compilation (about half a minute per preset on one CPU thread); later calls reuse it. Actions
        equal the eager ones to float tolerance (fused kernels reorder sums; tested within 1e-5), so a near
        tie between two codes or foresight tokens may resolve differently. Training passes through the
        same compiled trunk layers and vision tower.

        Args:
            mode: ``torch.compile``'s mode: None (its default), ``"reduce-overhead"`` (adds CUDA graphs on a
                GPU), ``"max-autotune"`` or ``"max-autotune-no-cudagraphs"``.
            dynamic: ``torch.compile``'s ``dynamic`` (False: one graph per shape, the fastest at a fixed
                batch size).
        """
        if mode is not None and mode not in COMPILE_MODES:
            raise ConfigError(f"mode: expected None or one of {list(COMPILE_MODES)}, received {mode!r}")
        if not isinstance(dynamic, bool):
            raise ConfigError(f"dynamic: expected a bool, received {type(dynamic).__name__}")
        self.trunk.compile_layers(mode=mode, dynamic=dynamic)
        self._compiled_velocity = torch.compile(self._velocity, mode=mode, dynamic=dynamic)
        self.understanding.vision.compile(mode=mode, dynamic=dynamic)
        if self.generation is not None:
            self.generation.tokenizer.compile_encoding(mode=mode, dynamic=dynamic)
            if self.config.has_foresight:
                self.generation.tokenizer.quantize.compile_next_scale(mode=mode, dynamic=dynamic)
        return self

    @property
    def is_compiled(self) -> bool:
        """Whether :meth:`compile_inference` was called."""
        return self.trunk.layers_compiled

    def add_embodiment(self, embodiment: Embodiment) -> None:
        """Register a new embodiment and give it a fresh adapter; no trunk weight changes.

        Raises ``ConfigError`` (before any change) if the name is taken.
        """
        config = self.config.with_embodiment(embodiment)  # validates (duplicate names, dims)
        adapter = EmbodimentAdapter(
            embodiment, self.config.trunk.action_width, self.config.action.time_convention
        )
        adapter.to(device=self.device, dtype=self.dtype)
        self.embodiments.register(embodiment)
        self.adapters[embodiment.name] = adapter
        self.config = config

    # --- inputs --------------------------------------------------------------------------------------
    def parse(
        self,
        batch: Mapping[str, Any],
        *,
        need_actions: bool = False,
        need_future: bool = False,
        need_history: bool | None = None,
    ) -> PolicyInputs:
        """Validate ``batch`` (keys: see the class docstring) into :class:`PolicyInputs` on the device.

        ``need_history`` (default: the mode's) reads ``history``; a caller that supplies the history as
        cached latents (:class:`f1.model.F1Policy`) passes False.
        """
        size = self.generation.image_size if self.generation is not None else (1, 1)
        return parse_inputs(
            batch,
            self.config,
            self.embodiments,
            self.tokenizer,
            device=self.device,
            tokenizer_image_size=tuple(size),
            need_actions=need_actions,
            need_future=need_future,
            need_history=self.config.has_history if need_history is None else need_history,
        )

    def scales(self, argument: str, value: int | None, default: int) -> int:
        """``value`` (or ``default``) checked as a number of VQ-VAE scales, the error naming ``argument``."""
        total = self.config.generation.vqvae_scales
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= total:
            raise InputError(
                f"{argument}: expected an int in [1, {total}] (the VQ-VAE's scales), received {value!r}"
            )
        return value

    @torch.no_grad()
    def frame_codes(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenizer codes of frames of the foresight camera (the modes that encode frames).

        Args:
            frames: ``(N, 3, H, W)`` float in [0, 1] or uint8, any size (resized to the tokenizer's).

        Returns:
            ``f_hat`` ``(N, Cz, h, w)`` float32 and the token indices of every scale ``(N, L)`` int64: the
            batch keys ``history.latents`` / ``future_image.latents`` / ``future_image.indices`` take
            them (see :class:`f1.data.FrameCodes`), so that a frozen tokenizer encodes each frame once.
        """
        if not self.config.has_history:
            raise ConfigError(f"mode: {self.config.mode!r} encodes no frames (it has no tokenizer)")
        generation = self._generation_io()
        unit = images_to_unit_float("frames", frames.to(self.device))
        if unit.ndim != 4:
            raise InputError(f"frames: expected (N, 3, H, W), received {tuple(frames.shape)}")
        resized = resize_frames(unit, tuple(generation.image_size)) * 2 - 1
        return generation.frame_codes(resized)

    # --- training ------------------------------------------------------------------------------------
    def forward(
        self, batch: Mapping[str, Any] | PolicyInputs, *, generation_scales: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Scalar losses of one batch (keys: see the class docstring; or inputs already parsed).

        Returns:
            ``"flow"``: flow-matching MSE over the valid entries only (each embodiment's real action
            dimensions, chunk steps that are not padding); ``"generation"`` (mode ``f1``): cross-entropy of
            the teacher-forced first ``generation_scales`` scales (None: ``generation.train_scales``, or all)
            over the samples whose future frame is real (``future_image_is_pad`` False; 0 when none is),
            detached under Frozen-Gen. Flow noise and time come from the global torch RNG (the trainer
            seeds it and stores it in checkpoints).
        """
        result = self._training_pass(batch, generation_scales)
        flow = [
            self._flow_loss(result.inputs, hidden[:, 1:], targets)
            for hidden, targets in zip(result.action_hidden, result.flow_targets)
        ]
        losses = {"flow": torch.stack(flow).mean() if len(flow) > 1 else flow[0]}
        if self.config.has_foresight:
            logits = self._generation_io().logits(result.hidden["gen"])
            targets = result.token_targets[: result.num_scales]
            real = result.inputs.future_valid
            if real is not None and not bool(real.all()):  # futures past the episode end are not targets
                rows = real.nonzero().flatten()
                logits, targets = logits.index_select(0, rows), [t.index_select(0, rows) for t in targets]
            if logits.shape[0]:
                generation_loss = next_scale_cross_entropy(logits, targets)
            else:
                generation_loss = logits.sum() * 0.0
            losses["generation"] = (
                generation_loss.detach() if self.config.generation.frozen else generation_loss
            )
        return losses

    def segment_outputs(
        self, batch: Mapping[str, Any], *, generation_scales: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Hidden states ``{segment: (B, n, width)}`` of the training pass (teacher forcing, ``a_tau`` drawn
        from the global RNG): what :meth:`forward` sees before its heads. For inspection and tests.

        Only the segments whose hidden states a head reads are there (``gen``, ``fut`` and ``act``): those
        of keys/values-only experts (``und``; ``hist`` in mode ``history_no_foresight``) are not computed,
        see :func:`mot_config`."""
        return self._training_pass(batch, generation_scales).hidden

    def _training_pass(
        self, batch: Mapping[str, Any] | PolicyInputs, generation_scales: int | None
    ) -> _TrainingPass:
        config = self.config
        num_scales = 1
        if config.has_foresight:
            default = config.generation.train_scales or config.generation.vqvae_scales
            num_scales = self.scales("generation_scales", generation_scales, default)
        if isinstance(batch, PolicyInputs):
            inputs = batch
            if inputs.actions is None or (config.has_foresight and inputs.future is None):
                raise InputError("batch: parsed inputs for training need actions (and, mode f1, the future)")
        else:
            inputs = self.parse(batch, need_actions=True, need_future=config.has_foresight)
        segments, valid_lengths = self._upstream_segments(inputs)
        token_targets: list[torch.Tensor] = []
        spec = self.attention_spec(num_scales)
        if config.has_foresight:
            generation = self._generation_io()
            if inputs.future_indices is not None:
                token_targets = inputs.future_indices
            else:
                assert inputs.future is not None  # parsed with need_future
                token_targets = generation.target_indices(inputs.future)
            segments["gen"] = generation.teacher_forced_tokens(token_targets, num_scales)
            if generation.foresight is not None:
                f_hat = self._true_foresight(inputs, token_targets, num_scales)
                share = config.generation.sampled_foresight
                if share > 0:
                    own = torch.rand(inputs.batch_size, device=self.device) < share
                    rows = own.nonzero().flatten()
                    if rows.numel():  # predicted only for the chosen samples
                        chosen = {name: x.index_select(0, rows) for name, x in segments.items()}
                        chosen_valid = {name: v.index_select(0, rows) for name, v in valid_lengths.items()}
                        predicted = self._predicted_foresight(chosen, chosen_valid, spec, num_scales)
                        f_hat = f_hat.index_copy(0, rows, predicted.to(f_hat.dtype))
                segments["fut"] = generation.foresight_tokens(f_hat)
        draws = config.action.noise_draws
        if draws == 1:
            tau = self._flow_time(inputs, 0)
            segments["act"], flow_targets = self._training_action_tokens(inputs, tau, 0)
            hidden = self.trunk(segments, spec, valid_lengths)
            return _TrainingPass(inputs, hidden, token_targets, [hidden["act"]], [flow_targets], num_scales)
        # several draws: the prefix once (its keys/values keep their gradients), the action segment per draw
        cache = KVCache(spec)
        hidden = self.trunk.extend(segments, spec, cache, valid_lengths, append=True)
        action_hidden, targets = [], []
        for draw in range(draws):
            tau = self._flow_time(inputs, draw)
            tokens, flow_targets = self._training_action_tokens(inputs, tau, draw)
            action_hidden.append(self.trunk.extend({"act": tokens}, spec, cache)["act"])
            targets.append(flow_targets)
        hidden["act"] = action_hidden[0]
        return _TrainingPass(inputs, hidden, token_targets, action_hidden, targets, num_scales)

    def _true_foresight(
        self, inputs: PolicyInputs, targets: list[torch.Tensor], num_scales: int
    ) -> torch.Tensor:
        """``f_hat`` ``(B, Cz, h, w)`` of the real future's first ``num_scales`` scales (cached if given)."""
        if inputs.future_latents is not None and num_scales == len(targets):
            return inputs.future_latents
        return self._generation_io().indices_to_fhat(targets[:num_scales])

    @torch.no_grad()
    def _predicted_foresight(
        self,
        segments: Mapping[str, torch.Tensor],
        valid_lengths: Mapping[str, torch.Tensor],
        spec: AttentionSpec,
        num_scales: int,
    ) -> torch.Tensor:
        """The model's own foresight in one teacher-forced pass without gradient: the most likely tokens of
        every scale (given the real coarser ones), summed into ``f_hat`` ``(B, Cz, h, w)``."""
        generation = self._generation_io()
        batch = segments["und"].shape[0]
        upstream = {name: segments[name] for name in ("und", "hist", "gen") if name in segments}
        # fut and act see gen but gen sees neither: placeholders leave the gen hidden states unchanged
        placeholders = {
            name: upstream["gen"].new_zeros(batch, spec.segment(name).length, width)
            for name, width in (
                ("fut", self.config.trunk.generation_width),
                ("act", self.config.trunk.action_width),
            )
        }
        hidden = self.trunk({**upstream, **placeholders}, spec, valid_lengths)["gen"]
        tokens = generation.logits(hidden).argmax(dim=-1)
        return generation.indices_to_fhat(list(tokens.split(list(generation.scale_tokens(num_scales)), 1)))

    def _history_tokens(self, inputs: PolicyInputs) -> torch.Tensor | None:
        """Tokens of the ``hist`` segment from cached frame latents, or by encoding the history frames."""
        if not self.config.has_history:
            return None
        generation = self._generation_io()
        if inputs.history_latents is not None:
            return generation.history_tokens_from_latents(inputs.history_latents, inputs.history_valid)
        if inputs.history is None:  # parse() reads the history in these modes unless told not to
            raise InputError("history: this mode needs the history frames (or the policy's cached latents)")
        return generation.history_tokens(inputs.history, inputs.history_valid)

    def _upstream_segments(
        self, inputs: PolicyInputs
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``und`` (and ``hist``) tokens, with the valid lengths of ``und``."""
        und, und_valid = self.understanding(inputs.images, inputs.text_ids, inputs.text_lengths)
        segments = {"und": und}
        hist = self._history_tokens(inputs)
        if hist is not None:
            segments["hist"] = hist
        return segments, {"und": und_valid}

    def _flow_time(self, inputs: PolicyInputs, draw: int) -> torch.Tensor:
        """``tau`` ``(B,)`` of flow draw ``draw``: the batch's (``flow.time``) or the time sampler's."""
        if inputs.flow_time is not None:
            return inputs.flow_time[:, draw]
        return self.time_sampler(inputs.batch_size, device=self.device)

    def _training_action_tokens(
        self, inputs: PolicyInputs, tau: torch.Tensor, draw: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Action-segment tokens ``(B, 1 + H, w)`` at ``a_tau``, and the target per embodiment: the velocity
        ``a - eps``, or the chunk ``a`` itself with ``action.prediction = "data"`` (the noise of flow draw
        ``draw``: the batch's ``flow.noise``, or the global RNG's)."""
        # parsed with need_actions
        assert inputs.actions is not None
        assert inputs.step_valid is not None
        width = self.config.trunk.action_width
        horizon = self.config.action.chunk_size
        tokens = torch.zeros(inputs.batch_size, 1 + horizon, width, device=self.device, dtype=self.dtype)
        targets = {}
        for group in inputs.groups:
            # padding (masked dimensions, padded steps) is zeroed so its values can never reach the loss
            valid = valid_entry_mask(
                inputs.actions[group.name].shape,
                action_dim_mask=group.embodiment.action_mask_tensor(self.device),
                step_mask=inputs.step_valid.index_select(0, group.rows),
                device=self.device,
            )
            actions = torch.where(valid, inputs.actions[group.name], 0.0)
            if inputs.flow_noise is not None:
                noise = inputs.flow_noise[group.name][:, draw]
            else:
                noise = torch.randn_like(actions)
            group_tau = tau.index_select(0, group.rows)
            noisy = interpolate(noise, actions, group_tau)
            group_tokens = self.adapters[group.name].encode(inputs.state[group.name], noisy, group_tau)
            tokens = tokens.index_copy(0, group.rows, group_tokens)
            if self.config.action.prediction == "data":
                targets[group.name] = actions
            else:
                targets[group.name] = target_velocity(noise, actions)
        return tokens, targets

    def _flow_loss(
        self, inputs: PolicyInputs, chunk_hidden: torch.Tensor, targets: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Masked MSE over all embodiments: sum of squared errors over valid entries / their number."""
        assert inputs.step_valid is not None  # parsed with need_actions
        total = chunk_hidden.new_zeros((), dtype=torch.float32)
        count = torch.zeros((), device=chunk_hidden.device)
        for group in inputs.groups:
            hidden = chunk_hidden.index_select(0, group.rows)
            output = self.adapters[group.name].decode(hidden)
            masks = {
                "action_dim_mask": group.embodiment.action_mask_tensor(self.device),
                "step_mask": inputs.step_valid.index_select(0, group.rows),
            }
            squared = flow_matching_loss(output, targets[group.name], reduction="none", **masks)
            total = total + squared.sum()
            count = count + valid_entry_mask(output.shape, device=self.device, **masks).sum()
        return total / count.clamp_min(1)

    # --- inference -----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        inputs: PolicyInputs,
        *,
        generator: torch.Generator,
        num_scales: int | None = None,
        noise: torch.Tensor | None = None,
        return_foresight: bool = False,
        decode_foresight: bool = False,
        use_cache: bool = True,
        recorder: LatencyRecorder | None = None,
        foresight_indices: list[torch.Tensor] | None = None,
        guidance: PreviousChunk | None = None,
    ) -> Plan:
        """An action chunk for the one embodiment of ``inputs``, in ``action.flow_steps`` ODE steps.

        Args:
            inputs: validated observation (:meth:`parse`, no actions); in history modes with ``history``
                frames or ``history_latents``.
            generator: the one source of randomness for foresight tokens and flow noise.
            num_scales: scales of the foresight (default ``generation.inference_scales``).
            noise: the flow's starting point ``(B, H, A)`` (``tau = 0``; pi0's ``t = 1``) in the normalized
                action space, instead of drawing it from ``generator`` (as LeRobot's and openpi's
                ``sample_actions(..., noise=...)``). Foresight tokens are still sampled from ``generator``.
            return_foresight: also return the sampled token indices; ``decode_foresight`` also decodes the
                image (costs a VQ-VAE decode).
            use_cache: False recomputes the whole prefix at every foresight scale and ODE step (the
                baseline of the benchmark); results agree with the cached path to float tolerance.
            recorder: per-module timing (:class:`~f1.model.latency.LatencyRecorder`); None times nothing.
            foresight_indices: a given foresight instead of a sampled one (mode ``f1``): token indices of
                the first ``num_scales`` scales ``[(B, h_k * w_k)]`` int64, teacher-forced into the ``gen``
                segment (and summed into ``fut``). For counterfactual checks: the real future, another
                episode's, or the current frame's codes.
            guidance: real-time chunking: the previous chunk's remaining raw actions and the inference
                delay (:class:`~f1.model.realtime_chunking.PreviousChunk`); the chunk is inpainted toward
                them with the ``action.rtc`` settings. None: plain sampling, bit for bit.

        Returns:
            :class:`Plan` with raw actions ``(B, H, A)`` and, when asked, the foresight; its ``latency_ms``
            is the recorder's breakdown (empty without one).
        """
        config = self.config
        recorder = recorder or LatencyRecorder(enabled=False)
        num_scales = self.scales("num_scales", num_scales, config.generation.inference_scales)
        if len(inputs.groups) != 1:
            names = [g.name for g in inputs.groups]
            raise InputError(f"embodiment: plan takes one embodiment per call, received {names}")
        group = inputs.groups[0]
        if noise is not None:
            _check_noise(noise, (inputs.batch_size, config.action.chunk_size, group.embodiment.action_dim))
        if guidance is not None:
            if not isinstance(guidance, PreviousChunk):
                raise InputError(
                    f"guidance: expected a PreviousChunk or None, received {type(guidance).__name__}"
                )
            guidance.check(inputs.batch_size, config.action.chunk_size, group.embodiment.action_dim)
        spec = self.attention_spec(num_scales)
        runner = CachedRunner(self.trunk, spec) if use_cache else RecomputingRunner(self.trunk, spec)
        with recorder.measure("image_encode"):
            und, und_valid = self.understanding(inputs.images, inputs.text_ids, inputs.text_lengths)
        with recorder.measure("prefix"):
            runner.append({"und": und}, {"und": und_valid})
        if config.has_history:
            with recorder.measure("history_encode"):
                runner.append({"hist": self._history_tokens(inputs)})
        foresight = None
        if foresight_indices is not None and not config.has_foresight:
            raise InputError(f"foresight_indices: mode {config.mode!r} reads no foresight (mode 'f1' does)")
        if config.has_foresight:
            generation = self._generation_io()
            with recorder.measure("foresight"):
                if foresight_indices is None:
                    indices, f_hat = self._sample_foresight(runner, inputs.batch_size, num_scales, generator)
                else:
                    indices = self._check_foresight_indices(foresight_indices, inputs.batch_size, num_scales)
                    runner.append({"gen": generation.teacher_forced_tokens(indices, num_scales)})
                    f_hat = generation.indices_to_fhat(indices)
                if generation.foresight is not None:
                    runner.append({"fut": generation.foresight_tokens(f_hat)})
            if return_foresight or decode_foresight:
                foresight = Foresight(indices=indices)
            if foresight is not None and decode_foresight:
                with recorder.measure("decode_foresight"):
                    foresight.image = self._generation_io().decode(f_hat)
        with recorder.measure("flow_steps"):
            normalized = self._sample_actions(
                runner, group.name, inputs.state[group.name], generator, noise=noise, guidance=guidance
            )
        actions = group.embodiment.unnormalize_action(normalized)
        return Plan(
            actions=actions, embodiment=group.name, foresight=foresight, latency_ms=recorder.breakdown()
        )

    def _check_foresight_indices(self, indices: object, batch: int, num_scales: int) -> list[torch.Tensor]:
        """``indices`` checked as the first ``num_scales`` scales' tokens of ``batch`` samples."""
        sizes = self._generation_io().scale_tokens(num_scales)
        vocab = self.config.generation.vqvae.vocab_size
        if not isinstance(indices, list | tuple) or len(indices) != num_scales:
            got = len(indices) if isinstance(indices, list | tuple) else type(indices).__name__
            raise InputError(f"foresight_indices: expected a list of {num_scales} scales, received {got}")
        checked = []
        for k, (scale, size) in enumerate(zip(indices, sizes)):
            if (
                not isinstance(scale, torch.Tensor)
                or scale.dtype != torch.int64
                or tuple(scale.shape) != (batch, size)
            ):
                got = f"{scale.dtype} {tuple(scale.shape)}" if isinstance(scale, torch.Tensor) else scale
                raise InputError(f"foresight_indices[{k}]: expected int64 ({batch}, {size}), received {got}")
            check_token_range(f"foresight_indices[{k}]", scale, vocab)
            checked.append(scale.to(self.device))
        return checked

    def _sample_foresight(
        self,
        runner: CachedRunner | RecomputingRunner,
        batch: int,
        num_scales: int,
        generator: torch.Generator,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Sample the first ``num_scales`` scales one at a time through the trunk (appending each)."""
        generation = self._generation_io()

        def logits_of_scale(scale: int, scale_inputs: torch.Tensor | None) -> torch.Tensor:
            tokens = generation.embed_scale(scale, scale_inputs, batch)
            return generation.logits(runner.append({"gen": tokens})["gen"]).float()

        gen = self.config.generation
        sampling = SamplingConfig(
            temperature=gen.temperature, top_k=gen.top_k or 0, top_p=gen.top_p or 1.0, num_scales=num_scales
        )
        sampled = sample_next_scales(
            logits_of_scale, generation.tokenizer.quantize, batch, sampling, generator
        )
        return sampled.indices, sampled.f_hat

    def _sample_actions(
        self,
        runner: CachedRunner | RecomputingRunner,
        embodiment: str,
        state: torch.Tensor,
        generator: torch.Generator,
        *,
        noise: torch.Tensor | None = None,
        guidance: PreviousChunk | None = None,
    ) -> torch.Tensor:
        """Integrate the action expert's velocity field from noise (tau = 0) to normalized actions.

        With ``guidance`` the field runs with grad enabled for the action tokens only (real-time chunking
        differentiates the velocity by the state): the prefix's keys/values were computed without grad and
        ``runner.downstream`` never writes them.
        """
        adapter = self.adapters[embodiment]
        horizon, dim = self.config.action.chunk_size, self.embodiments.get(embodiment).action_dim
        if isinstance(runner, CachedRunner):
            # checked and laid out once for every step; each step is then one (compiled) region
            width = self.config.trunk.action_width
            like = torch.empty(state.shape[0], 1 + horizon, width, dtype=self.dtype, device=self.device)
            call = runner.prepare_downstream({"act": like})
            step = self._compiled_velocity if guidance is None and self._compiled_velocity else self._velocity

            def velocity(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
                return step(adapter, state, x, tau, call)

        else:

            def velocity(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
                hidden = runner.downstream({"act": adapter.encode(state, x, tau)})["act"][:, 1:]
                return self._field(adapter.decode(hidden), x, tau)

        if noise is None:
            noise = gaussian_noise((state.shape[0], horizon, dim), generator=generator, device=self.device)
            if self.config.action.noise_scale != 1.0:
                noise = noise * self.config.action.noise_scale
        else:
            noise = noise.to(device=self.device, dtype=torch.float32)
        # float64 times where the device has them: pi0's t = 1 - tau is then rounded once, to the float
        # nearest the exact grid time, as LeRobot's pi0 computes it
        time_dtype = torch.float64 if self.device.type in ("cpu", "cuda") else None
        rtc = None
        if guidance is not None:
            rtc = guidance.guidance(
                self.embodiments.get(embodiment), self.config.action, batch=state.shape[0], device=self.device
            )
        result = sample(
            velocity,
            noise,
            solver=self.config.action.solver,
            steps=self.config.action.flow_steps,
            time_dtype=time_dtype,
            guidance=rtc,
        )
        return result.x

    def _velocity(
        self,
        adapter: EmbodimentAdapter,
        state: torch.Tensor,
        x: torch.Tensor,
        tau: torch.Tensor,
        call: DownstreamCall,
    ) -> torch.Tensor:
        """One evaluation of the action expert's velocity field: ``a_tau`` ``(B, H, A)`` and ``tau`` ``(B,)``
        -> ``d a_tau / d tau`` ``(B, H, A)`` float32, through the adapter and the trunk's prepared
        read-only call against the cache (what :meth:`compile_inference` compiles as one region)."""
        hidden = self.trunk.run_downstream(call, {"act": adapter.encode(state, x, tau)})["act"][:, 1:]
        return self._field(adapter.decode(hidden), x, tau)

    def _field(self, output: torch.Tensor, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """The velocity the action expert's ``output`` stands for: itself, or with ``action.prediction =
        "data"`` the path's velocity toward the predicted chunk, ``(output - x) / (1 - tau)``."""
        if self.config.action.prediction == "data":
            return velocity_from_data_prediction(x, output, tau)
        return output


def _check_noise(noise: object, expected: tuple[int, int, int]) -> None:
    if not isinstance(noise, torch.Tensor) or tuple(noise.shape) != expected:
        got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise InputError(f"noise: expected a tensor of shape {expected}, received {got}")
    check_finite_float("noise", noise)
