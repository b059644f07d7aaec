"""Parsing and validating a batch (training) or an observation (inference) at the policy's boundary.

Everything is checked here, before any module runs or any state changes, and every error names the batch
key, the expected and the received value. The result, :class:`PolicyInputs`, holds normalized tensors on
the policy's device; the policy itself never looks at raw batch keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from f1.checks import did_you_mean
from f1.errors import InputError
from f1.keys import (
    ACTION_IS_PAD_KEY,
    ACTION_KEY,
    EMBODIMENT_KEY,
    FLOW_NOISE_KEY,
    FLOW_TIME_KEY,
    FUTURE_INDICES_KEY,
    FUTURE_IS_PAD_KEY,
    FUTURE_KEY,
    FUTURE_LATENTS_KEY,
    HISTORY_IS_PAD_KEY,
    HISTORY_KEY,
    HISTORY_LATENTS_KEY,
    IMAGE_KEY_PREFIX,
    STATE_KEY,
    TASK_KEY,
    camera_key,
)
from f1.model.config import F1Config
from f1.model.embodiment import Embodiment, EmbodimentRegistry
from f1.model.language import TextTokenizer
from f1.model.vision import images_to_unit_float

__all__ = [
    "EmbodimentGroup",
    "PolicyInputs",
    "check_finite_float",
    "check_token_range",
    "parse_inputs",
    "resize_frames",
]


@dataclass(frozen=True)
class EmbodimentGroup:
    """The rows of a batch that belong to one embodiment."""

    embodiment: Embodiment
    rows: torch.Tensor  # (n,) long

    @property
    def name(self) -> str:
        return self.embodiment.name


@dataclass
class PolicyInputs:
    """A validated batch on the policy's device.

    Attributes:
        images: ``(B, C, 3, H, W)`` float in [0, 1], cameras in config order.
        text_ids, text_lengths: ``(B, L)`` right-padded ids and ``(B,)`` valid lengths.
        groups: per-embodiment rows.
        state: per group, the normalized state ``(n, S_e)``.
        history: ``(B, T, 3, H_g, W_g)`` in [-1, 1] at the tokenizer's size, or None.
        history_latents: ``(B, T, Cz, h, w)`` the history frames' tokenizer latents, when a caller cached
            them (then ``history`` is None), or None.
        history_valid: ``(B, T)`` bool (False for padded frames), or None.
        future: ``(B, 3, H_g, W_g)`` in [-1, 1], or None (also None when the codes below are given).
        future_latents: ``(B, Cz, h, w)`` the future frame's tokenizer latent, when the batch carried it
            (``future_image.latents``, cached per frame), or None.
        future_indices: the future frame's token indices per scale ``[(B, h_k * w_k)]``, with
            ``future_latents``, or None.
        future_valid: ``(B,)`` bool, False where the future frame lies past the episode's end (the batch's
            ``future_image_is_pad``; such a target is the last frame repeated, so the generation loss skips
            it), or None (all real).
        actions: per group, normalized actions ``(n, H, A_e)``, or None.
        step_valid: ``(B, H)`` bool, True for real chunk steps, or None.
        flow_noise: per group, the batch's flow noise ``(n, D, H, A_e)`` (``flow.noise``), or None (the
            model draws it).
        flow_time: ``(B, D)`` the batch's flow times (``flow.time``), or None.
    """

    images: torch.Tensor
    text_ids: torch.Tensor
    text_lengths: torch.Tensor
    groups: list[EmbodimentGroup]
    state: dict[str, torch.Tensor]
    history: torch.Tensor | None = None
    history_latents: torch.Tensor | None = None
    history_valid: torch.Tensor | None = None
    future: torch.Tensor | None = None
    future_latents: torch.Tensor | None = None
    future_indices: list[torch.Tensor] | None = None
    future_valid: torch.Tensor | None = None
    actions: dict[str, torch.Tensor] | None = None
    step_valid: torch.Tensor | None = None
    flow_noise: dict[str, torch.Tensor] | None = None
    flow_time: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(..., 3, H, W)`` -> ``(..., 3, *size)`` (antialiased bilinear; unchanged when already that size)."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = F.interpolate(flat, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.clamp(0, 1).reshape(*lead, 3, *size)


def _tensor(batch: Mapping[str, Any], key: str, expected: str) -> torch.Tensor:
    if key not in batch:
        raise InputError(
            f"{key}: missing from the batch (expected {expected}); keys present: {sorted(batch)}"
        )
    value = batch[key]
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{key}: expected a tensor {expected}, received {type(value).__name__}")
    return value


def _check_batch(key: str, value: torch.Tensor, batch_size: int) -> None:
    if value.shape[0] != batch_size:
        raise InputError(f"{key}: expected batch size {batch_size}, received shape {tuple(value.shape)}")


def _embodiment_names(batch: Mapping[str, Any], registry: EmbodimentRegistry, default: str, size: int):
    names = batch.get(EMBODIMENT_KEY, default)
    if isinstance(names, tuple):
        names = list(names)
    if not isinstance(names, str | list):
        raise InputError(
            f"{EMBODIMENT_KEY}: expected a str or a list of str, received {type(names).__name__}"
        )
    return registry.resolve(names, size)


def _groups(
    names: Sequence[str], registry: EmbodimentRegistry, device: torch.device
) -> list[EmbodimentGroup]:
    order = list(dict.fromkeys(names))
    return [
        EmbodimentGroup(
            registry.get(name),
            torch.tensor([i for i, n in enumerate(names) if n == name], dtype=torch.long, device=device),
        )
        for name in order
    ]


def _per_group(
    key: str, value: torch.Tensor, groups: list[EmbodimentGroup], dim_of: str, batch_dims: int
) -> dict[str, torch.Tensor]:
    """Slice ``value`` (B, ..., D) per group to each embodiment's own width; D must be the largest of them."""
    widths = {g.name: getattr(g.embodiment, dim_of) for g in groups}
    widest = max(widths.values())
    if value.shape[-1] != widest:
        detail = ", ".join(f"{n}: {w}" for n, w in widths.items())
        raise InputError(
            f"{key}: expected last dimension {widest} (embodiments in this batch: {detail}; mixed batches "
            f"are zero-padded to the widest), received shape {tuple(value.shape)}"
        )
    check_finite_float(key, value)
    return {g.name: value.index_select(0, g.rows)[..., : widths[g.name]] for g in groups}


_READ_KEYS = (
    STATE_KEY,
    TASK_KEY,
    EMBODIMENT_KEY,
    HISTORY_KEY,
    HISTORY_LATENTS_KEY,
    HISTORY_IS_PAD_KEY,
    FUTURE_KEY,
    FUTURE_LATENTS_KEY,
    FUTURE_INDICES_KEY,
    FUTURE_IS_PAD_KEY,
    ACTION_KEY,
    ACTION_IS_PAD_KEY,
    FLOW_NOISE_KEY,
    FLOW_TIME_KEY,
)


def _reject_near_misses(batch: Mapping[str, Any], config: F1Config) -> None:
    known = [*_READ_KEYS, *(camera_key(c) for c in config.cameras)]
    for key in batch:
        if key in known or not isinstance(key, str):
            continue
        hint = did_you_mean(key, known, cutoff=0.85)
        if hint:
            raise InputError(f"{key}: unknown key{hint}; the model reads {known}")


def _latent_shape(config: F1Config) -> tuple[int, int, int]:
    """``(Cz, h, w)`` of the configured tokenizer's latents."""
    vqvae = config.generation.vqvae
    height, width = vqvae.schedule.sizes[-1]
    return (vqvae.z_channels, height, width)


def check_finite_float(key: str, value: torch.Tensor) -> None:
    """``value`` is a floating-point tensor with finite entries, or an :class:`InputError` naming ``key``."""
    if not value.is_floating_point():
        raise InputError(f"{key}: expected a floating-point tensor, received dtype {value.dtype}")
    if not bool(torch.isfinite(value).all()):
        raise InputError(f"{key}: expected finite values, received NaN or inf")


def check_token_range(key: str, indices: torch.Tensor, vocab: int) -> None:
    """Token ``indices`` lie in ``[0, vocab)``, or an :class:`InputError` naming ``key`` and what it saw."""
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= vocab):
        raise InputError(
            f"{key}: expected token indices in [0, {vocab}), received values in "
            f"[{int(indices.min())}, {int(indices.max())}]"
        )


def _future_codes(
    batch: Mapping[str, Any], config: F1Config, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The cached future codes: ``future_image.latents`` ``(B, Cz, h, w)`` and ``future_image.indices``
    ``(B, L)`` int64 in ``[0, V)``, split per scale."""
    latent_shape = _latent_shape(config)
    vqvae = config.generation.vqvae
    tokens = vqvae.schedule.tokens_per_scale
    latents = _tensor(batch, FUTURE_LATENTS_KEY, f"(B, {', '.join(map(str, latent_shape))})")
    if latents.ndim != 4 or tuple(latents.shape[1:]) != latent_shape:
        raise InputError(
            f"{FUTURE_LATENTS_KEY}: expected (B, {', '.join(map(str, latent_shape))}), "
            f"received {tuple(latents.shape)}"
        )
    _check_batch(FUTURE_LATENTS_KEY, latents, batch_size)
    check_finite_float(FUTURE_LATENTS_KEY, latents)
    indices = _tensor(batch, FUTURE_INDICES_KEY, f"(B, {sum(tokens)}) int64")
    if indices.dtype != torch.int64 or tuple(indices.shape) != (batch_size, sum(tokens)):
        raise InputError(
            f"{FUTURE_INDICES_KEY}: expected int64 ({batch_size}, {sum(tokens)}) (every scale's tokens), "
            f"received {indices.dtype} {tuple(indices.shape)}"
        )
    check_token_range(FUTURE_INDICES_KEY, indices, vqvae.vocab_size)
    per_scale = list(indices.to(device).split(list(tokens), dim=1))
    return latents.to(device=device, dtype=torch.float32), per_scale


def parse_inputs(
    batch: Mapping[str, Any],
    config: F1Config,
    registry: EmbodimentRegistry,
    tokenizer: TextTokenizer,
    *,
    device: torch.device,
    tokenizer_image_size: tuple[int, int],
    need_actions: bool,
    need_future: bool,
    need_history: bool,
) -> PolicyInputs:
    """Validate ``batch`` and return normalized tensors on ``device`` (see :class:`f1.model.F1Model` for
    the keys); ``history`` is read when ``need_history``.

    Keys the model does not read are ignored (LeRobot's columns such as ``episode_index``, collate masks),
    except one that is a near miss of a key it reads (``history_is_padd``): that is refused, naming the key
    it probably meant, since the value would otherwise be silently dropped.
    """
    if not isinstance(batch, Mapping):
        raise InputError(f"batch: expected a mapping of keys to values, received {type(batch).__name__}")
    _reject_near_misses(batch, config)
    # cameras
    cameras = []
    size = config.vision.image_size
    for camera in config.cameras:
        key = IMAGE_KEY_PREFIX + camera
        image = _tensor(batch, key, f"(B, 3, {size}, {size})")
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, size, size):
            raise InputError(f"{key}: expected (B, 3, {size}, {size}), received {tuple(image.shape)}")
        cameras.append(image)
    batch_size = int(cameras[0].shape[0])
    for camera, image in zip(config.cameras, cameras):
        _check_batch(IMAGE_KEY_PREFIX + camera, image, batch_size)
    images = torch.stack(
        [images_to_unit_float(camera_key(c), im.to(device)) for c, im in zip(config.cameras, cameras)], 1
    )

    # language
    if TASK_KEY not in batch:
        raise InputError(f"{TASK_KEY}: missing from the batch (expected a list of {batch_size} instructions)")
    tasks = batch[TASK_KEY]
    if not isinstance(tasks, str | list | tuple):
        raise InputError(
            f"{TASK_KEY}: expected a str or a list of {batch_size} str, received {type(tasks).__name__}"
        )
    tasks = [tasks] * batch_size if isinstance(tasks, str) else list(tasks)
    if len(tasks) != batch_size or not all(isinstance(t, str) for t in tasks):
        raise InputError(
            f"{TASK_KEY}: expected {batch_size} instruction strings, received {batch[TASK_KEY]!r}"
        )
    text_ids, text_lengths = tokenizer(tasks)

    # embodiments and state
    names = _embodiment_names(batch, registry, config.default_embodiment_name, batch_size)
    groups = _groups(names, registry, device)
    state = _tensor(batch, "observation.state", "(B, S)")
    if state.ndim != 2:
        raise InputError(f"{STATE_KEY}: expected (B, S), received {tuple(state.shape)}")
    _check_batch(STATE_KEY, state, batch_size)
    raw_state = _per_group(STATE_KEY, state.to(device), groups, "state_dim", 1)
    norm_state = {g.name: g.embodiment.normalize_state(raw_state[g.name].float()) for g in groups}

    inputs = PolicyInputs(
        images=images,
        text_ids=text_ids.to(device),
        text_lengths=text_lengths.to(device),
        groups=groups,
        state=norm_state,
    )

    # history and future frames for the generation expert
    latent_shape = _latent_shape(config)
    if need_history:
        if HISTORY_LATENTS_KEY in batch:
            key = HISTORY_LATENTS_KEY
            latents = _tensor(batch, key, f"(B, T, {', '.join(map(str, latent_shape))})")
            if latents.ndim != 5 or tuple(latents.shape[2:]) != latent_shape:
                raise InputError(
                    f"{key}: expected (B, T, {', '.join(map(str, latent_shape))}), "
                    f"received {tuple(latents.shape)}"
                )
            check_finite_float(key, latents)
            inputs.history_latents = latents.to(device=device, dtype=torch.float32)
            history = latents
        else:
            key = HISTORY_KEY
            history = _tensor(batch, key, "(B, T, 3, H, W)")
            if history.ndim != 5 or history.shape[2] != 3:
                raise InputError(f"{key}: expected (B, T, 3, H, W), received {tuple(history.shape)}")
            unit = images_to_unit_float(key, history.to(device))
            inputs.history = resize_frames(unit, tokenizer_image_size) * 2 - 1
        _check_batch(key, history, batch_size)
        frames = history.shape[1]
        if not 1 <= frames <= config.generation.history_frames:
            raise InputError(
                f"{key}: expected 1 to {config.generation.history_frames} frames "
                f"(generation.history_frames), received {frames}"
            )
        valid = torch.ones(batch_size, frames, dtype=torch.bool, device=device)
        if HISTORY_IS_PAD_KEY in batch:
            pad = _tensor(batch, HISTORY_IS_PAD_KEY, f"(B, {frames}) bool")
            if pad.dtype != torch.bool or tuple(pad.shape) != (batch_size, frames):
                raise InputError(
                    f"{HISTORY_IS_PAD_KEY}: expected bool ({batch_size}, {frames}), "
                    f"received {pad.dtype} {tuple(pad.shape)}"
                )
            valid = ~pad.to(device)
            if not bool(valid.any(dim=1).all()):
                raise InputError(f"{HISTORY_IS_PAD_KEY}: every sample needs at least one real history frame")
        inputs.history_valid = valid
    if need_future and FUTURE_INDICES_KEY in batch:
        inputs.future_latents, inputs.future_indices = _future_codes(batch, config, batch_size, device)
    elif need_future:
        future = _tensor(batch, FUTURE_KEY, "(B, 3, H, W)")
        if future.ndim != 4 or future.shape[1] != 3:
            raise InputError(f"{FUTURE_KEY}: expected (B, 3, H, W), received {tuple(future.shape)}")
        _check_batch(FUTURE_KEY, future, batch_size)
        unit = images_to_unit_float(FUTURE_KEY, future.to(device))
        inputs.future = resize_frames(unit, tokenizer_image_size) * 2 - 1
    if need_future and FUTURE_IS_PAD_KEY in batch:
        pad = _tensor(batch, FUTURE_IS_PAD_KEY, f"({batch_size},) bool")
        if pad.dtype != torch.bool or tuple(pad.shape) != (batch_size,):
            raise InputError(
                f"{FUTURE_IS_PAD_KEY}: expected bool ({batch_size},), received {pad.dtype} {tuple(pad.shape)}"
            )
        inputs.future_valid = ~pad.to(device)

    # actions
    if need_actions:
        action = _tensor(batch, ACTION_KEY, "(B, H, A)")
        horizon = config.action.chunk_size
        if action.ndim != 3 or action.shape[1] != horizon:
            raise InputError(
                f"{ACTION_KEY}: expected (B, {horizon}, A) (action.chunk_size={horizon}), "
                f"received {tuple(action.shape)}"
            )
        _check_batch(ACTION_KEY, action, batch_size)
        raw = _per_group(ACTION_KEY, action.to(device), groups, "action_dim", 2)
        inputs.actions = {g.name: g.embodiment.normalize_action(raw[g.name].float()) for g in groups}
        step_valid = torch.ones(batch_size, horizon, dtype=torch.bool, device=device)
        if ACTION_IS_PAD_KEY in batch:
            pad = _tensor(batch, ACTION_IS_PAD_KEY, f"(B, {horizon}) bool")
            if pad.dtype != torch.bool or tuple(pad.shape) != (batch_size, horizon):
                raise InputError(
                    f"{ACTION_IS_PAD_KEY}: expected bool ({batch_size}, {horizon}), "
                    f"received {pad.dtype} {tuple(pad.shape)}"
                )
            step_valid = ~pad.to(device)
            if not bool(step_valid.any()):
                raise InputError(
                    f"{ACTION_IS_PAD_KEY}: every chunk step of every sample is padding; the batch has no "
                    "action to learn from"
                )
        inputs.step_valid = step_valid
        _parse_flow_randomness(batch, inputs, config, groups, device)
    return inputs


def _parse_flow_randomness(
    batch: Mapping[str, Any],
    inputs: PolicyInputs,
    config: F1Config,
    groups: list[EmbodimentGroup],
    device: torch.device,
) -> None:
    """``flow.noise`` and ``flow.time`` (both or neither), checked and stored with a draw axis."""
    given = [key for key in (FLOW_NOISE_KEY, FLOW_TIME_KEY) if key in batch]
    if not given:
        return
    if len(given) == 1:
        missing = FLOW_TIME_KEY if given[0] == FLOW_NOISE_KEY else FLOW_NOISE_KEY
        raise InputError(f"{missing}: missing from the batch; {given[0]} comes with it (both or neither)")
    batch_size, horizon, draws = inputs.batch_size, config.action.chunk_size, config.action.noise_draws
    time = _tensor(batch, FLOW_TIME_KEY, f"({batch_size},) or ({batch_size}, {draws}) floats in [0, 1]")
    if time.ndim == 1:
        time = time[:, None]
    if tuple(time.shape) != (batch_size, draws) or not time.is_floating_point():
        raise InputError(
            f"{FLOW_TIME_KEY}: expected float ({batch_size},) or ({batch_size}, {draws}) "
            f"(action.noise_draws={draws}), received {time.dtype} {tuple(time.shape)}"
        )
    check_finite_float(FLOW_TIME_KEY, time)
    if bool((time < 0).any()) or bool((time > 1).any()):
        raise InputError(
            f"{FLOW_TIME_KEY}: expected values in [0, 1], received [{float(time.min())}, {float(time.max())}]"
        )
    shapes = f"({batch_size}, {horizon}, A) or ({batch_size}, {draws}, {horizon}, A)"
    noise = _tensor(batch, FLOW_NOISE_KEY, shapes)
    if noise.ndim == 3:
        noise = noise[:, None]
    if noise.ndim != 4 or tuple(noise.shape[:3]) != (batch_size, draws, horizon):
        raise InputError(
            f"{FLOW_NOISE_KEY}: expected {shapes} "
            f"(action.noise_draws={draws}, action.chunk_size={horizon}), received {tuple(noise.shape)}"
        )
    per_group = _per_group(FLOW_NOISE_KEY, noise.to(device), groups, "action_dim", 3)
    inputs.flow_noise = {name: value.float() for name, value in per_group.items()}
    inputs.flow_time = time.to(device=device, dtype=torch.float32)
