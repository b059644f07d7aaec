"""``F1Policy``: understanding -> generation (foresight) -> action, as one model built from the blocks.

Training (the trainer's contract): :meth:`F1Policy.parameter_groups` and :meth:`F1Policy.compute_losses`.
Inference (LeRobot's style): :meth:`F1Policy.select_action` with an action queue and a replanning
interval, :meth:`F1Policy.reset` between episodes; :meth:`F1Policy.plan` returns a whole chunk with the
foresight and the per-module latency.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from f1.model.adapters import EmbodimentAdapter
from f1.model.checkpoint import load_policy, save_policy
from f1.model.config import F1Config
from f1.model.embodiment import Embodiment, EmbodimentRegistry
from f1.model.errors import ConfigError, InputError
from f1.model.generation import GenerationIO
from f1.model.inputs import (
    HISTORY_IS_PAD_KEY,
    HISTORY_KEY,
    IMAGE_KEY_PREFIX,
    STATE_KEY,
    PolicyInputs,
    parse_inputs,
    resize_frames,
)
from f1.model.language import TextTokenizer, build_tokenizer
from f1.model.latency import LatencyRecorder
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
)
from mot import AttentionSpec, ExpertConfig, MixtureOfTransformers, MoTConfig
from var_foresight import SamplingConfig, next_scale_cross_entropy, sample_next_scales

__all__ = ["F1Policy", "Foresight", "Plan"]

PARAMETER_GROUPS: tuple[str, ...] = (
    "vision",
    "understanding",
    "generation",
    "action",
    "tokenizer",
    "embodiment",
)


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
        latency_ms: per-module wall time (see :mod:`f1.model.latency`).
    """

    actions: torch.Tensor
    embodiment: str
    foresight: Foresight | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class _TrainingPass:
    inputs: PolicyInputs
    hidden: dict[str, torch.Tensor]
    token_targets: list[torch.Tensor]
    velocity_targets: dict[str, torch.Tensor]
    num_scales: int


def mot_config(config: F1Config) -> MoTConfig:
    """The trunk's :class:`mot.MoTConfig`: experts ``und``, ``act`` and (unless mode ``no_gen``) ``gen``."""
    trunk = config.trunk
    experts = {"und": ExpertConfig(trunk.understanding_width, trunk.understanding_mlp)}
    if config.has_history:
        experts["gen"] = ExpertConfig(trunk.generation_width, trunk.generation_mlp)
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


class F1Policy(nn.Module):
    """The F1 vision-language-action policy.

    Args:
        config: the :class:`~f1.model.F1Config` (e.g. ``preset("tiny")``).
        tokenizer: optional text tokenizer (a :class:`~f1.model.language.TextTokenizer`, or a Gemma
            tokenizer object with ``encode``); by default the one named by ``config.language``.

    Batch keys read by :meth:`compute_losses` (``B`` samples, collated):

    - ``observation.images.<camera>``: ``(B, 3, H, W)`` float in [0, 1] or uint8, for every configured
      camera, ``H = W = vision.image_size``;
    - ``observation.state``: ``(B, S)`` raw state (``S``: the widest embodiment in the batch);
    - ``action``: ``(B, chunk_size, A)`` raw actions; ``action_is_pad``: ``(B, chunk_size)`` bool, optional;
    - ``task``: ``list[str]`` (or one str) instructions;
    - ``embodiment``: ``list[str]`` or ``str``, optional (default: ``config.default_embodiment``);
    - ``history``: ``(B, T, 3, H, W)`` past frames of the foresight camera, oldest first, the current frame
      last, ``1 <= T <= generation.history_frames`` (modes ``f1`` and ``history_no_foresight``);
      ``history_is_pad``: ``(B, T)`` bool, optional;
    - ``future_image``: ``(B, 3, H, W)`` the frame ``generation.history_stride`` steps ahead (mode ``f1``).

    History and future frames are resized to the VQ-VAE's image size when they differ. :meth:`select_action`
    reads the same keys without ``action``, ``history`` and ``future_image`` (it keeps its own history).
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
        self._given_tokenizer = tokenizer
        self._tokenizer: TextTokenizer | None = None
        if config.generation.frozen and self.generation is not None:
            for parameter in self.parameter_groups()["generation"]:
                parameter.requires_grad_(False)
        self._generator = torch.Generator().manual_seed(0)
        self._action_queue: deque[torch.Tensor] = deque()
        self._frames: deque[torch.Tensor] = deque()
        self._episode_embodiment: str | None = None
        self.last_plan: Plan | None = None

    # --- structure -----------------------------------------------------------------------------------
    def _generation_io(self) -> GenerationIO:
        if self.generation is None:
            raise InputError(f"history/foresight: mode {self.config.mode!r} has no generation expert")
        return self.generation

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
    def trunk_dtype(self) -> torch.dtype:
        return next(self.trunk.parameters()).dtype

    def attention_spec(self, num_scales: int | None = None) -> AttentionSpec:
        """The UGA spec of a pass predicting ``num_scales`` scales (mode ``f1``; ignored otherwise)."""
        history = self.generation.history_length if self.generation is not None else None
        scales = None
        if self.config.has_foresight:
            scales = self._generation_io().scale_tokens(num_scales or self.config.generation.num_scales)
        return uga_spec(
            self.config.mode,
            und_length=self.understanding.length,
            chunk_size=self.config.action.chunk_size,
            history_length=history,
            scale_tokens=scales,
        )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Every parameter in exactly one group.

        ``vision``: the timm tower; ``understanding``: projector, language embedding and the understanding
        expert; ``generation``: the generation expert, history encoder, next-scale embedding and head;
        ``action``: the action expert; ``embodiment``: the per-embodiment adapters; ``tokenizer``: the
        frozen VQ-VAE. Groups without parameters (e.g. ``generation`` in mode ``no_gen``) are omitted.
        """
        groups: dict[str, list[nn.Parameter]] = {name: [] for name in PARAMETER_GROUPS}
        groups["vision"] += list(self.understanding.vision.parameters())
        groups["understanding"] += list(self.understanding.projector.parameters())
        groups["understanding"] += list(self.understanding.language.parameters())
        for expert, group in (("und", "understanding"), ("gen", "generation"), ("act", "action")):
            if expert in self.trunk.experts:
                groups[group] += list(self.trunk.experts[expert].parameters())
        if self.generation is not None:
            groups["tokenizer"] += list(self.generation.tokenizer.parameters())
            for part in (self.generation.history, self.generation.embedding, self.generation.head):
                if part is not None:
                    groups["generation"] += list(part.parameters())
        groups["embodiment"] += list(self.adapters.parameters())
        return {name: params for name, params in groups.items() if params}

    def to_precision(self, dtype: torch.dtype = torch.bfloat16) -> F1Policy:
        """Cast every weight to ``dtype`` except the VQ-VAE tokenizer, which stays float32 (as published:
        its nearest-code search is exact only in full precision). Returns ``self``."""
        tokenizer = self.generation.tokenizer if self.generation is not None else None
        for module in self.children():
            if module is not self.generation:
                module.to(dtype)
        if self.generation is not None:
            for child in self.generation.children():
                if child is not tokenizer:
                    child.to(dtype)
        return self

    def add_embodiment(self, embodiment: Embodiment) -> None:
        """Register a new embodiment and give it a fresh adapter; no trunk weight changes.

        Raises ``ConfigError`` (before any change) if the name is taken.
        """
        config = self.config.with_embodiment(embodiment)  # validates (duplicate names, dims)
        reference = next(iter(self.adapters.values())).action_decoder.velocity_out.weight
        adapter = EmbodimentAdapter(
            embodiment, self.config.trunk.action_width, self.config.action.time_convention
        )
        adapter.to(device=reference.device, dtype=reference.dtype)
        self.embodiments.register(embodiment)
        self.adapters[embodiment.name] = adapter
        self.config = config

    # --- persistence ----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` (tensors + config metadata) and ``config.json`` into ``directory``."""
        return save_policy(self, directory)

    @classmethod
    def load(cls, path: str | Path, *, device: torch.device | str = "cpu", tokenizer: Any = None) -> F1Policy:
        """A policy saved by :meth:`save` (tensors only; every key and shape checked)."""
        policy = load_policy(path, device=device, tokenizer=tokenizer)
        if not isinstance(policy, cls):
            raise ConfigError(f"path: expected a {cls.__name__} checkpoint, received {type(policy).__name__}")
        return policy

    # --- training ------------------------------------------------------------------------------------
    def _parse(self, batch: Mapping[str, Any], *, need_actions: bool, need_future: bool) -> PolicyInputs:
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
        )

    def _scales(self, argument: str, value: int | None, default: int) -> int:
        total = self.config.generation.num_scales
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= total:
            raise InputError(
                f"{argument}: expected an int in [1, {total}] (the VQ-VAE's scales), received {value!r}"
            )
        return value

    def compute_losses(
        self, batch: Mapping[str, Any], *, generation_scales: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Scalar losses of one batch (keys: see the class docstring).

        Returns:
            ``"flow"``: flow-matching MSE over the valid entries only (each embodiment's real action
            dimensions, chunk steps that are not padding); ``"generation"`` (mode ``f1``): cross-entropy of
            the teacher-forced first ``generation_scales`` scales (None: ``generation.train_scales``, or all),
            detached under Frozen-Gen. Flow noise and time come from the global torch RNG (the trainer
            seeds it and stores it in checkpoints).
        """
        result = self._training_pass(batch, generation_scales)
        losses = {
            "flow": self._flow_loss(result.inputs, result.hidden["act"][:, 1:], result.velocity_targets)
        }
        if self.config.has_foresight:
            logits = self._generation_io().logits(result.hidden["gen"])
            generation_loss = next_scale_cross_entropy(logits, result.token_targets[: result.num_scales])
            losses["generation"] = (
                generation_loss.detach() if self.config.generation.frozen else generation_loss
            )
        return losses

    def segment_outputs(
        self, batch: Mapping[str, Any], *, generation_scales: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Hidden states ``{segment: (B, n, width)}`` of the training pass (teacher forcing, ``a_tau`` drawn
        from the global RNG): what :meth:`compute_losses` sees before its heads. For inspection and tests."""
        return self._training_pass(batch, generation_scales).hidden

    def _training_pass(self, batch: Mapping[str, Any], generation_scales: int | None) -> _TrainingPass:
        config = self.config
        num_scales = 1
        if config.has_foresight:
            default = config.generation.train_scales or config.generation.num_scales
            num_scales = self._scales("generation_scales", generation_scales, default)
        inputs = self._parse(batch, need_actions=True, need_future=config.has_foresight)
        segments, valid_lengths = self._upstream_segments(inputs)
        token_targets: list[torch.Tensor] = []
        if config.has_foresight and inputs.future is not None:
            generation = self._generation_io()
            token_targets = generation.target_indices(inputs.future)
            segments["gen"] = generation.teacher_forced_tokens(token_targets, num_scales).to(self.trunk_dtype)
        tau = self.time_sampler(inputs.batch_size, device=self.device)
        segments["act"], velocity_targets = self._training_action_tokens(inputs, tau)
        hidden = self.trunk(segments, self.attention_spec(num_scales), valid_lengths)
        return _TrainingPass(inputs, hidden, token_targets, velocity_targets, num_scales)

    def _upstream_segments(
        self, inputs: PolicyInputs
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``und`` (and ``hist``) tokens in the trunk's dtype, with the valid lengths of ``und``."""
        und, und_valid = self.understanding(inputs.images, inputs.text_ids, inputs.text_lengths)
        segments = {"und": und.to(self.trunk_dtype)}
        if self.config.has_history and inputs.history is not None:
            hist = self._generation_io().history_tokens(inputs.history, inputs.history_valid)
            segments["hist"] = hist.to(self.trunk_dtype)
        return segments, {"und": und_valid}

    def _training_action_tokens(
        self, inputs: PolicyInputs, tau: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Action-segment tokens ``(B, 1 + H, w)`` at ``a_tau``, and the target velocity per embodiment."""
        if inputs.actions is None or inputs.step_valid is None:
            raise InputError(
                f"action: missing from the batch (expected (B, {self.config.action.chunk_size}, A))"
            )
        width = self.config.trunk.action_width
        horizon = self.config.action.chunk_size
        tokens = torch.zeros(
            inputs.batch_size, 1 + horizon, width, device=self.device, dtype=self.trunk_dtype
        )
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
            noise = torch.randn_like(actions)
            group_tau = tau.index_select(0, group.rows)
            noisy = interpolate(noise, actions, group_tau)
            group_tokens = self.adapters[group.name].encode(inputs.state[group.name], noisy, group_tau)
            tokens = tokens.index_copy(0, group.rows, group_tokens.to(tokens.dtype))
            targets[group.name] = target_velocity(noise, actions)
        return tokens, targets

    def _flow_loss(
        self, inputs: PolicyInputs, chunk_hidden: torch.Tensor, targets: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Masked MSE over all embodiments: sum of squared errors over valid entries / their number."""
        if inputs.step_valid is None:
            raise InputError("action_is_pad: the step mask was not built (no actions in the batch)")
        total = chunk_hidden.new_zeros((), dtype=torch.float32)
        count = torch.zeros((), device=chunk_hidden.device)
        for group in inputs.groups:
            hidden = chunk_hidden.index_select(0, group.rows)
            velocity = self.adapters[group.name].decode(hidden).float()
            masks = {
                "action_dim_mask": group.embodiment.action_mask_tensor(self.device),
                "step_mask": inputs.step_valid.index_select(0, group.rows),
            }
            squared = flow_matching_loss(velocity, targets[group.name], reduction="none", **masks)
            total = total + squared.sum()
            count = count + valid_entry_mask(velocity.shape, device=self.device, **masks).sum()
        return total / count.clamp_min(1)

    # --- inference -----------------------------------------------------------------------------------
    @torch.no_grad()
    def plan(
        self,
        observation: Mapping[str, Any],
        *,
        num_scales: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        return_foresight: bool = False,
        decode_foresight: bool = False,
        use_cache: bool = True,
        noise: torch.Tensor | None = None,
    ) -> Plan:
        """An action chunk for one embodiment, from noise to data in ``action.flow_steps`` ODE steps.

        Args:
            observation: batch keys as in the class docstring (cameras, state, task, embodiment and,
                with history modes, ``history``); no actions.
            num_scales: scales of the foresight (default ``generation.inference_scales``).
            generator: the one source of randomness for both token sampling and flow noise (default:
                the policy's, set by :meth:`reset`).
            seed: build a fresh generator from this seed instead.
            return_foresight: also return the sampled token indices; ``decode_foresight`` also decodes the
                image (costs a VQ-VAE decode).
            use_cache: False recomputes the whole prefix at every foresight scale and ODE step (the
                baseline of the benchmark); results agree with the cached path to float tolerance.
            noise: the flow's starting point ``(B, H, A)`` (``tau = 0``; pi0's ``t = 1``) in the normalized
                action space, instead of drawing it from the generator (as LeRobot's and openpi's
                ``sample_actions(..., noise=...)``). Foresight tokens are still sampled from the generator.

        Returns:
            :class:`Plan` with raw actions ``(B, H, A)``, the foresight and the latency breakdown.
        """
        config = self.config
        self.tokenizer  # noqa: B018 (built once, on first use, outside the timed modules)
        recorder = LatencyRecorder(self.device)
        with recorder.measure("preprocess"):
            if seed is not None:
                generator = torch.Generator().manual_seed(seed)
            generator = generator or self._generator
            num_scales = self._scales("num_scales", num_scales, config.generation.inference_scales)
            inputs = self._parse(observation, need_actions=False, need_future=False)
            if len(inputs.groups) != 1:
                names = [g.name for g in inputs.groups]
                raise InputError(f"embodiment: plan takes one embodiment per call, received {names}")
            group = inputs.groups[0]
            if noise is not None:
                expected = (inputs.batch_size, config.action.chunk_size, group.embodiment.action_dim)
                if not isinstance(noise, torch.Tensor) or tuple(noise.shape) != expected:
                    got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
                    raise InputError(f"noise: expected a tensor of shape {expected}, received {got}")
                if not noise.is_floating_point():
                    raise InputError(f"noise: expected a floating-point tensor, received dtype {noise.dtype}")
                if not bool(torch.isfinite(noise).all()):
                    raise InputError("noise: expected finite values, received NaN or inf")
            spec = self.attention_spec(num_scales)
            runner = CachedRunner(self.trunk, spec) if use_cache else RecomputingRunner(self.trunk, spec)
        batch, dtype = inputs.batch_size, self.trunk_dtype
        with recorder.measure("image_encode"):
            und, und_valid = self.understanding(inputs.images, inputs.text_ids, inputs.text_lengths)
        with recorder.measure("prefix"):
            runner.append({"und": und.to(dtype)}, {"und": und_valid})
        if config.has_history and inputs.history is not None:
            with recorder.measure("history_encode"):
                hist = self._generation_io().history_tokens(inputs.history, inputs.history_valid)
                runner.append({"hist": hist.to(dtype)})
        foresight = None
        if config.has_foresight:
            with recorder.measure("foresight"):
                indices, f_hat = self._sample_foresight(runner, batch, num_scales, generator)
            if return_foresight or decode_foresight:
                foresight = Foresight(indices=indices)
            if foresight is not None and decode_foresight:
                with recorder.measure("decode_foresight"):
                    foresight.image = self._generation_io().decode(f_hat)
        with recorder.measure("flow_steps"):
            normalized = self._sample_actions(
                runner, group.name, inputs.state[group.name], generator, noise=noise
            )
        actions = group.embodiment.unnormalize_action(normalized)
        return Plan(
            actions=actions, embodiment=group.name, foresight=foresight, latency_ms=recorder.breakdown()
        )

    def _sample_foresight(
        self,
        runner: CachedRunner | RecomputingRunner,
        batch: int,
        num_scales: int,
        generator: torch.Generator,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Sample the first ``num_scales`` scales one at a time through the trunk (appending each)."""
        generation = self._generation_io()
        dtype = self.trunk_dtype

        def logits_of_scale(scale: int, scale_inputs: torch.Tensor | None) -> torch.Tensor:
            tokens = generation.embed_scale(scale, scale_inputs, batch)
            return generation.logits(runner.append({"gen": tokens.to(dtype)})["gen"]).float()

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
    ) -> torch.Tensor:
        """Integrate the action expert's velocity field from noise (tau = 0) to normalized actions."""
        adapter = self.adapters[embodiment]
        dtype = self.trunk_dtype
        horizon, dim = self.config.action.chunk_size, self.embodiments.get(embodiment).action_dim

        def velocity(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
            tokens = adapter.encode(state, x, tau).to(dtype)
            hidden = runner.downstream({"act": tokens})["act"][:, 1:]
            return adapter.decode(hidden.to(adapter.action_decoder.velocity_out.weight.dtype)).float()

        if noise is None:
            noise = gaussian_noise((state.shape[0], horizon, dim), generator=generator, device=self.device)
        else:
            noise = noise.to(device=self.device, dtype=torch.float32)
        # float64 times where the device has them: pi0's t = 1 - tau is then rounded once, to the float
        # nearest the exact grid time, as LeRobot's pi0 computes it
        time_dtype = torch.float64 if self.device.type in ("cpu", "cuda") else None
        result = sample(
            velocity,
            noise,
            solver=self.config.action.solver,
            steps=self.config.action.flow_steps,
            time_dtype=time_dtype,
        )
        return result.x

    # --- LeRobot-style control loop --------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Start an episode: empty the action queue and the frame history; reseed when ``seed`` is given."""
        self._action_queue.clear()
        self._frames.clear()
        self._episode_embodiment = None
        if seed is not None:
            self._generator = torch.Generator().manual_seed(seed)

    @staticmethod
    def _history_window(
        frames: list[torch.Tensor], history_frames: int, stride: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, 3, H, W)`` frames at offsets ``-(T-1)*stride .. 0`` and their ``(B, T)`` padding flags
        (frames before the episode start repeat its first frame and are marked as padding)."""
        window, is_pad = [], []
        for k in range(history_frames - 1, -1, -1):
            index = len(frames) - 1 - k * stride
            window.append(frames[max(index, 0)])
            is_pad.append(index < 0)
        stacked = torch.stack(window, dim=1)
        pad = torch.tensor(is_pad, device=stacked.device).expand(stacked.shape[0], -1)
        return stacked, pad

    @torch.no_grad()
    def select_action(self, observation: Mapping[str, Any]) -> torch.Tensor:
        """The next action ``(B, A)`` (``(A,)`` for an unbatched observation), replanning every
        ``action.n_action_steps`` calls. Call :meth:`reset` at the start of each episode.

        ``observation``: ``observation.images.<camera>`` ``(B, 3, H, W)`` or ``(3, H, W)``,
        ``observation.state`` ``(B, S)`` or ``(S,)``, ``task`` and optionally ``embodiment``; raw values
        (the policy normalizes and unnormalizes). A call that raises leaves the queue and the history as
        they were.
        """
        observation, batched = self._batched(observation)
        name = observation.get("embodiment", self.config.default_embodiment_name)
        if not isinstance(name, str):  # a batch of one embodiment: ["so100", "so100"]
            names = set(name)
            name = names.pop() if len(names) == 1 else sorted(names)
        self.embodiments.get(name)
        if self._episode_embodiment not in (None, name):
            raise InputError(
                f"embodiment: the episode started with {self._episode_embodiment!r}, received {name!r}; "
                "call reset() between episodes"
            )
        gen = self.config.generation
        frames = list(self._frames)
        if self.config.has_history:
            key = IMAGE_KEY_PREFIX + self.config.foresight_camera
            if key not in observation:
                raise InputError(f"{key}: missing from the observation (the foresight camera)")
            frame = images_to_unit_float(key, observation[key].to(self.device))
            frames.append(resize_frames(frame, tuple(self._generation_io().image_size)))
            frames = frames[-((gen.history_frames - 1) * gen.history_stride + 1) :]
        steps = None
        if not self._action_queue:
            request = dict(observation)
            if self.config.has_history:
                window = self._history_window(frames, gen.history_frames, gen.history_stride)
                request[HISTORY_KEY], request[HISTORY_IS_PAD_KEY] = window
            plan = self.plan(request)  # validates everything; raises before any state below changes
            self.last_plan = plan
            steps = plan.actions[:, : self.config.action.n_action_steps]
        # commit
        self._frames = deque(frames)
        if steps is not None:
            self._action_queue.extend(steps.transpose(0, 1))
        self._episode_embodiment = name
        action = self._action_queue.popleft()
        return action if batched else action[0]

    def predict_action_chunk(self, observation: Mapping[str, Any], **kwargs: Any) -> torch.Tensor:
        """LeRobot's name: raw actions ``(B, H, A)`` (see :meth:`plan` for the arguments)."""
        return self.plan(observation, **kwargs).actions

    def _batched(self, observation: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        if not isinstance(observation, Mapping):
            raise InputError(f"observation: expected a mapping, received {type(observation).__name__}")
        state = observation.get(STATE_KEY)
        if not isinstance(state, torch.Tensor):
            raise InputError(
                f"{STATE_KEY}: expected a tensor (S,) or (B, S), received {type(state).__name__}"
            )
        if state.ndim == 2:
            return dict(observation), True
        out = dict(observation)
        out[STATE_KEY] = state[None]
        for camera in self.config.cameras:
            key = IMAGE_KEY_PREFIX + camera
            if isinstance(out.get(key), torch.Tensor) and out[key].ndim == 3:
                out[key] = out[key][None]
        return out, False
