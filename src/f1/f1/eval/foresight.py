"""The foresight picture and its numbers: what F1 imagines ``stride`` steps ahead against what happened.

Episodes of the scripted expert on the given (held-out) seeds give real frame sequences and the scene's
privileged state at every step. At one anchor step t per episode (the middle of the expert's approach to
the object) the policy receives the history it would have had (frames t - (T-1)*stride .. t), samples its
foresight and decodes it. The imagined frame is measured against the real frame at t + stride, beside two
references through the same tokenizer and scales: the real future (the ceiling: the best a foresight can
reach) and the current frame (the copy baseline: "nothing moves"). Three measures:

- PSNR at the tokenizer's image size;
- token accuracy per scale: the share of token indices equal to the real future's;
- object-position error: the named object located by its colour in each frame (:func:`locate_colour`),
  against its true position at t + stride from the environment's privileged state, in table widths.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from f1.envs import COLOURS, TABLE_IMAGE_KEY, TableTaskConfig, TableTaskEnv, TaskState, make_expert, rollout
from f1.envs.table_render import (
    ARM_RGB,
    BELT_RGB,
    BIN_INTERIOR_MIX,
    GRIPPER_CLOSED_RGB,
    GRIPPER_OPEN_RGB,
    TABLE_RGB,
)
from f1.envs.table_scene import INSTRUCTION_TEMPLATE
from f1.eval.plots import ForesightRow
from f1.keys import camera_key
from f1.model import F1Policy
from f1.model.inputs import resize_frames
from var_foresight import psnr

__all__ = [
    "ForesightAnchors",
    "ForesightSamples",
    "PositionError",
    "collect_anchors",
    "collect_foresight",
    "frame_indices",
    "locate_colour",
    "measure_foresight",
    "object_position_errors",
    "policy_anchors",
    "token_accuracy",
]

MAX_COLOUR_DISTANCE = 60.0
"""Default largest RGB distance (0-255 units) of a pixel from the object's colour for it to count."""

MIN_FOUND_FRACTION = 0.25
"""Default share of the object's area (at the image's resolution) that must match for it to be found."""

# Every colour the renderer paints, so that a pixel counts for an object only when the object's colour is
# its nearest (blurred mixtures of two colours count for neither).
_PALETTE = np.array(
    [
        *COLOURS.values(),
        *(BIN_INTERIOR_MIX * np.array(c) + (1 - BIN_INTERIOR_MIX) * TABLE_RGB for c in COLOURS.values()),
        TABLE_RGB,
        BELT_RGB,
        ARM_RGB,
        GRIPPER_OPEN_RGB,
        GRIPPER_CLOSED_RGB,
    ],
    dtype=np.float64,
)

_INSTRUCTION = re.compile(
    re.escape(INSTRUCTION_TEMPLATE)
    .replace(r"\{colour\}", r"(?P<colour>\w+)")
    .replace(r"\{shape\}", r"(?P<shape>\w+)")
    .replace(r"\{bin_colour\}", r"\w+")
)


# --- anchors ------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ForesightAnchors:
    """One anchor per expert episode: what the policy sees at step t and what happens at t + stride.

    B anchors, T history frames, frames of H x W pixels (the environment's resolution).

    Attributes:
        seeds: the episode seed of each anchor, length B.
        steps: the anchor step t of each, length B.
        stride: steps from the current frame to the future one.
        history: the history frames (t + each history offset), uint8 ``(B, T, H, W, 3)``.
        current: frame t, uint8 ``(B, H, W, 3)``.
        future: frame t + stride, uint8 ``(B, H, W, 3)``.
        states: proprioception at t, float32 ``(B, S)``.
        tasks: the instructions, length B.
        target_rgb: the named object's colour, uint8 ``(B, 3)``.
        target_offset: the named object's shape centroid minus its centre, table widths ``(B, 2)`` (nonzero
            for triangles: subtracted from a located centroid to get the centre).
        target_area: the named object's area, table widths squared ``(B,)``.
        future_positions: the named object's centre at t + stride (privileged state), table widths ``(B, 2)``.
        wraps: whether x is periodic for that object at t + stride (on the moving, looping belt), ``(B,)``.
        backgrounds: each episode's empty table (table, belt, bins), uint8 ``(B, H, W, 3)``.
    """

    seeds: tuple[int, ...]
    steps: tuple[int, ...]
    stride: int
    history: np.ndarray
    current: np.ndarray
    future: np.ndarray
    states: np.ndarray
    tasks: list[str]
    target_rgb: np.ndarray
    target_offset: np.ndarray
    target_area: np.ndarray
    future_positions: np.ndarray
    wraps: np.ndarray
    backgrounds: np.ndarray

    def __len__(self) -> int:
        return len(self.seeds)

    def observation(self, camera: str, embodiment: str) -> dict[str, Any]:
        """The policy's batched observation at the anchors, with its ``history`` (see
        :meth:`f1.model.F1Policy.plan`)."""
        history = _as_float(self.history)
        return {
            camera_key(camera): _as_float(self.current),
            "observation.state": torch.from_numpy(self.states).float(),
            "task": list(self.tasks),
            "embodiment": embodiment,
            "history": history,
            "history_is_pad": torch.zeros(history.shape[:2], dtype=torch.bool),
        }


def _as_float(array: np.ndarray) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` -> float ``(..., 3, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).movedim(-1, -3).float() / 255.0


def _check_seeds(seeds: object) -> list[int]:
    if not isinstance(seeds, list | tuple | range) or not seeds:
        raise ValueError(f"seeds: expected a non-empty list of episode seeds, received {seeds!r}")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"seeds: expected non-negative integers, received {bad[:5]}")
    return list(seeds)


def collect_anchors(
    task: TableTaskConfig, history_offsets: tuple[int, ...], stride: int, seeds: list[int]
) -> ForesightAnchors:
    """One anchor per seed: the expert's episode on it, at the middle of its approach to the object.

    The approach is the steps before the expert grasps; the anchor is the middle of the steps with a full
    history whose future frame (t + ``stride``) still comes before the grasp, or of all steps with a full
    history and a future when the approach is too short. Episodes too short for either are skipped.

    Args:
        task: the table task (embodiment and variant included).
        history_offsets: offsets of the history frames from t, oldest first, the last 0 (e.g. ``(-2, 0)``).
        stride: steps to the future frame, positive.
        seeds: episode seeds; the anchors come from these only.

    Raises:
        ValueError: bad arguments, or no episode long enough.
    """
    seeds = _check_seeds(seeds)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected a positive integer, received {stride!r}")
    if not history_offsets or any(o > 0 for o in history_offsets):
        raise ValueError(f"history_offsets: expected non-positive offsets, received {history_offsets!r}")
    env = TableTaskEnv(task)
    expert = make_expert(env)
    renderer = env.renderer
    dynamic = task.variant == "dynamic"
    rows: dict[str, list[Any]] = {key: [] for key in ForesightAnchors.__dataclass_fields__}
    rows.pop("stride")
    for episode_seed in seeds:
        snapshots: list[TaskState] = []

        def act(observation: Any, snapshots: list[TaskState] = snapshots) -> Any:
            snapshots.append(env.task_state())  # the state that frame len(snapshots) - 1 shows
            return expert.act(observation)

        record = rollout(env, act, seed=episode_seed)
        images = record[TABLE_IMAGE_KEY]
        first, last = -min(history_offsets), len(images) - 1 - stride
        if last < first:
            continue
        grasp = next((i for i, s in enumerate(snapshots) if s.held_object >= 0), len(snapshots))
        approach_last = min(last, grasp - stride)
        t = (first + approach_last) // 2 if approach_last >= first else (first + last) // 2
        state = snapshots[t + stride]
        colour, shape = _target_colour_and_shape(record["task"])
        mask = renderer.masks[shape]
        rows_, cols = np.nonzero(mask)
        offset = (np.array([cols.mean(), rows_.mean()]) + 0.5 - mask.shape[0] / 2) / renderer.resolution
        index = state.target_object
        rows["seeds"].append(episode_seed)
        rows["steps"].append(t)
        rows["history"].append(images[[t + o for o in history_offsets]])
        rows["current"].append(images[t])
        rows["future"].append(images[t + stride])
        rows["states"].append(record["observation.state"][t])
        rows["tasks"].append(record["task"])
        rows["target_rgb"].append(renderer.colour_rgb[colour])
        rows["target_offset"].append(offset)
        rows["target_area"].append(mask.sum() / renderer.resolution**2)
        rows["future_positions"].append(state.object_positions[index])
        rows["wraps"].append(
            dynamic
            and state.conveyor_wraps
            and bool(state.object_on_belt[index])
            and state.held_object != index
        )
        rows["backgrounds"].append(renderer.background(state.bins))
    if not rows["seeds"]:
        raise ValueError("seeds: no episode was long enough for a history and a future frame")
    stacked = {
        key: tuple(value) if key in ("seeds", "steps") else value if key == "tasks" else np.stack(value)
        for key, value in rows.items()
    }
    return ForesightAnchors(stride=stride, **stacked)


def _target_colour_and_shape(instruction: str) -> tuple[str, str]:
    match = _INSTRUCTION.fullmatch(instruction)
    if match is None or match["colour"] not in COLOURS:
        raise ValueError(f"instruction: expected {INSTRUCTION_TEMPLATE!r}, received {instruction!r}")
    return match["colour"], match["shape"]


# --- the object locator ----------------------------------------------------------------------------------
def locate_colour(
    image: np.ndarray,
    rgb: np.ndarray | tuple[int, int, int],
    *,
    min_pixels: int = 1,
    max_distance: float = MAX_COLOUR_DISTANCE,
    exclude: np.ndarray | None = None,
    radius: float | None = None,
    wrap: bool = False,
) -> tuple[float, float] | None:
    """The centroid ``(x, y)`` in table widths of the pixels of colour ``rgb``, or None when too few match.

    A pixel matches when it lies within ``max_distance`` of ``rgb`` and no colour the renderer paints is
    nearer (so a blurred mixture of the object and the belt counts for neither). With ``radius``, only the
    matches within ``radius`` of their coordinate-wise median count (stray matches elsewhere do not pull
    the centroid).

    Args:
        image: uint8 or float in [0, 255], ``(H, W, 3)``.
        rgb: the colour, ``(3,)`` in [0, 255].
        min_pixels: fewest matching pixels for a position.
        max_distance: largest Euclidean RGB distance of a match.
        exclude: bool ``(H, W)``, pixels never to count (e.g. a bin wall of the same colour).
        radius: table widths, or None to keep every match.
        wrap: x is periodic (an object on the looping belt may straddle the left and right edges).
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3:
        got = image.shape if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image: expected an (H, W, 3) array, received {got}")
    colour = np.asarray(rgb, dtype=np.float64)
    if colour.shape != (3,):
        raise ValueError(f"rgb: expected 3 values in [0, 255], received shape {colour.shape}")
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, int) or min_pixels < 1:
        raise ValueError(f"min_pixels: expected a positive integer, received {min_pixels!r}")
    height, width = image.shape[:2]
    if exclude is not None and (exclude.shape != (height, width) or exclude.dtype != bool):
        raise ValueError(
            f"exclude: expected bool ({height}, {width}), received {exclude.dtype} {exclude.shape}"
        )
    pixels = image.astype(np.float64)
    distance = np.linalg.norm(pixels - colour, axis=-1)
    others = _PALETTE[np.linalg.norm(_PALETTE - colour, axis=-1) > 1.0]
    nearest_other = np.linalg.norm(pixels[..., None, :] - others, axis=-1).min(axis=-1)
    match = (distance <= max_distance) & (distance <= nearest_other)
    if exclude is not None:
        match &= ~exclude
    rows, cols = np.nonzero(match)
    if len(rows) < min_pixels:
        return None
    x, y = (cols + 0.5) / width, (rows + 0.5) / height
    if wrap and len(x) > 1:  # shift by half a table when that makes the pixels one cluster
        shifted = (x + 0.5) % 1.0
        if shifted.std() < x.std():
            x = shifted - 0.5
    if radius is not None:
        near = np.hypot(x - np.median(x), y - np.median(y)) <= radius
        if near.sum() < min_pixels:
            return None
        x, y = x[near], y[near]
    cx = float(x.mean() % 1.0) if wrap else float(x.mean())
    return cx, float(y.mean())


@dataclass(frozen=True)
class PositionError:
    """Distance of a located object from its true position, table widths, over the anchors.

    Attributes:
        errors: per anchor, NaN where the object was not found, length B.
    """

    errors: tuple[float, ...]

    @property
    def found(self) -> int:
        return sum(not math.isnan(e) for e in self.errors)

    @property
    def found_rate(self) -> float:
        return self.found / max(1, len(self.errors))

    @property
    def mean(self) -> float | None:
        """Mean over the anchors where the object was found (None if none)."""
        found = [e for e in self.errors if not math.isnan(e)]
        return float(np.mean(found)) if found else None

    @property
    def median(self) -> float | None:
        found = [e for e in self.errors if not math.isnan(e)]
        return float(np.median(found)) if found else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "median": self.median,
            "found_rate": self.found_rate,
            "found": self.found,
            "not_found": len(self.errors) - self.found,
        }


def object_position_errors(
    anchors: ForesightAnchors,
    images: np.ndarray,
    *,
    max_distance: float = MAX_COLOUR_DISTANCE,
    min_fraction: float = MIN_FOUND_FRACTION,
) -> PositionError:
    """The named object located in ``images`` (uint8 ``(B, h, w, 3)``, any square size) against its true
    position at t + stride (x periodic where the object rides the looping belt)."""
    if images.shape[0] != len(anchors) or images.ndim != 4:
        raise ValueError(f"images: expected ({len(anchors)}, h, w, 3), received {images.shape}")
    side = images.shape[1]
    backgrounds = anchors.backgrounds
    if backgrounds.shape[1] != side:
        backgrounds = _to_uint8(resize_frames(_as_float(backgrounds), (side, side)))
    errors = []
    for i in range(len(anchors)):
        rgb = anchors.target_rgb[i]
        # The empty table's pixels of that colour (a bin wall), grown by a pixel: never the object.
        near = np.linalg.norm(backgrounds[i].astype(np.float64) - rgb, axis=-1) <= 1.5 * max_distance
        grown = near.copy()
        grown[1:] |= near[:-1]
        grown[:-1] |= near[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        area = float(anchors.target_area[i])
        found = locate_colour(
            images[i],
            rgb,
            min_pixels=max(1, math.floor(min_fraction * area * side * side)),
            max_distance=max_distance,
            exclude=grown,
            radius=math.sqrt(area),
            wrap=bool(anchors.wraps[i]),
        )
        if found is None:
            errors.append(math.nan)
            continue
        position = np.array(found) - anchors.target_offset[i]
        dx, dy = np.abs(position - anchors.future_positions[i])
        if anchors.wraps[i]:
            dx = min(dx % 1.0, 1.0 - dx % 1.0)
        errors.append(float(math.hypot(dx, dy)))
    return PositionError(tuple(errors))


def token_accuracy(predicted: list[torch.Tensor], target: list[torch.Tensor]) -> tuple[float, ...]:
    """Per scale, the share of token indices of ``predicted`` equal to ``target``'s (each ``(B, h_k * w_k)``
    int64, the first scales of both)."""
    if len(predicted) > len(target):
        raise ValueError(f"target: expected at least {len(predicted)} scales, received {len(target)}")
    accuracy = []
    for k, (p, t) in enumerate(zip(predicted, target)):
        if p.shape != t.shape:
            raise ValueError(f"predicted[{k}]: expected shape {tuple(t.shape)}, received {tuple(p.shape)}")
        accuracy.append(float((p.cpu() == t.cpu()).float().mean()))
    return tuple(accuracy)


# --- the foresight numbers -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ForesightSamples:
    """Foresight examples and their numbers over the anchors.

    PSNR in dB at the tokenizer's image size; token accuracies in [0, 1] per predicted scale, coarsest
    first; object errors in table widths. "Copy" is the current frame through the tokenizer at the same
    scales: the "nothing moves" guess a foresight must beat.

    Attributes:
        rows: examples for :func:`f1.eval.plots.plot_foresight` (the first few samples).
        samples: number of anchors measured.
        psnr_imagined: imagined frame vs. the real future frame.
        psnr_tokenizer: the real future through the tokenizer vs. itself (upper reference).
        psnr_no_motion: the current frame through the tokenizer (copy) vs. the real future.
        psnr_no_motion_raw: the current frame itself vs. the real future.
        token_accuracy_imagined: imagined tokens vs. the real future's, per scale.
        token_accuracy_copy: the current frame's tokens vs. the real future's, per scale.
        object_errors: the named object located in ``"imagined"``, ``"copy"``, ``"tokenizer"`` (the real
            future through the tokenizer: the ceiling) and ``"real"`` (the raw real future: the locator's
            own error) vs. its true position at t + stride.
    """

    rows: list[ForesightRow]
    samples: int
    psnr_imagined: float
    psnr_tokenizer: float
    psnr_no_motion: float
    psnr_no_motion_raw: float | None = None
    token_accuracy_imagined: tuple[float, ...] = ()
    token_accuracy_copy: tuple[float, ...] = ()
    object_errors: dict[str, PositionError] = field(default_factory=dict)

    @property
    def object_error_ratio(self) -> float | None:
        """Mean imagined error / mean copy error over the anchors where both found the object (None when
        none did or the copy's error is 0)."""
        imagined, copy = self.object_errors.get("imagined"), self.object_errors.get("copy")
        if imagined is None or copy is None:
            return None
        pairs = [(a, b) for a, b in zip(imagined.errors, copy.errors) if not (math.isnan(a) or math.isnan(b))]
        copy_mean = float(np.mean([b for _, b in pairs])) if pairs else 0.0
        return float(np.mean([a for a, _ in pairs])) / copy_mean if copy_mean > 0 else None

    def to_dict(self) -> dict[str, Any]:
        finest = lambda values: values[-1] if values else None  # noqa: E731
        return {
            "samples": self.samples,
            "psnr_imagined_db": self.psnr_imagined,
            "psnr_tokenizer_db": self.psnr_tokenizer,
            "psnr_no_motion_db": self.psnr_no_motion,
            "psnr_no_motion_raw_db": self.psnr_no_motion_raw,
            "token_accuracy_imagined_per_scale": list(self.token_accuracy_imagined),
            "token_accuracy_copy_per_scale": list(self.token_accuracy_copy),
            "token_accuracy_imagined_finest": finest(self.token_accuracy_imagined),
            "token_accuracy_copy_finest": finest(self.token_accuracy_copy),
            **{f"object_error_{name}": error.to_dict() for name, error in self.object_errors.items()},
            "object_error_ratio_imagined_to_copy": self.object_error_ratio,
        }


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` in [0, 1] -> uint8 ``(B, H, W, 3)``."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _check_policy(policy: object) -> F1Policy:
    if not isinstance(policy, F1Policy):
        raise ValueError(f"policy: expected an F1Policy, received {type(policy).__name__}")
    if not policy.config.has_foresight:
        raise ValueError(f"policy: mode {policy.config.mode!r} predicts no foresight (mode 'f1' does)")
    return policy


def policy_anchors(policy: F1Policy, task: TableTaskConfig, seeds: list[int]) -> ForesightAnchors:
    """:func:`collect_anchors` at ``policy``'s history offsets and foresight stride."""
    stride = policy.config.future_offset
    assert stride is not None  # a policy with foresight imagines a future frame
    return collect_anchors(task, policy.config.history_offsets, stride, seeds)


def frame_indices(policy: F1Policy, frames: np.ndarray, num_scales: int) -> list[torch.Tensor]:
    """Token indices of the first ``num_scales`` scales of uint8 frames ``(N, H, W, 3)``:
    ``[(N, h_k * w_k)]`` int64, on the policy's device."""
    generation = policy.model.generation
    assert generation is not None  # a policy that foresees encodes frames
    sizes = list(generation.scale_tokens(num_scales))
    _, codes = policy.model.frame_codes(_as_float(frames))
    return list(codes[:, : sum(sizes)].split(sizes, dim=1))


def _decode(policy: F1Policy, indices: list[torch.Tensor]) -> torch.Tensor:
    generation = policy.model.generation
    assert generation is not None
    return generation.decode(generation.indices_to_fhat(indices)).cpu()


@torch.no_grad()
def collect_foresight(
    policy: F1Policy,
    task: TableTaskConfig,
    camera: str,
    seeds: list[int],
    *,
    examples: int = 3,
    seed: int = 0,
    max_distance: float = MAX_COLOUR_DISTANCE,
) -> ForesightSamples:
    """One anchor per seed (:func:`collect_anchors`), all planned in one batch, and their numbers.

    Args:
        policy: a policy that foresees (mode ``f1``).
        task: the table task (embodiment and variant included) whose expert episodes give the frames.
        camera: the camera name under which ``policy`` reads the table view (``observation.images.<camera>``).
        seeds: one episode seed per anchor (held-out seeds: the anchors come from these only).
        examples: rows kept for the picture.
        seed: seeds the foresight's sampling.
        max_distance: the object locator's colour tolerance (:func:`locate_colour`).
    """
    policy = _check_policy(policy)
    anchors = policy_anchors(policy, task, seeds)
    return measure_foresight(
        policy, anchors, camera, task.embodiment, examples=examples, seed=seed, max_distance=max_distance
    )


@torch.no_grad()
def measure_foresight(
    policy: F1Policy,
    anchors: ForesightAnchors,
    camera: str,
    embodiment: str,
    *,
    examples: int = 3,
    seed: int = 0,
    max_distance: float = MAX_COLOUR_DISTANCE,
) -> ForesightSamples:
    """The numbers of :func:`collect_foresight` on given anchors (e.g. reused across measurements).

    Args:
        policy: a policy that foresees (mode ``f1``), whose history offsets the anchors follow.
        anchors: from :func:`collect_anchors` (or :func:`policy_anchors`).
        camera, embodiment: the camera and embodiment names under which ``policy`` reads the anchors.
        examples, seed, max_distance: as in :func:`collect_foresight`.
    """
    policy = _check_policy(policy)
    if not isinstance(anchors, ForesightAnchors):
        raise ValueError(f"anchors: expected ForesightAnchors, received {type(anchors).__name__}")
    if anchors.history.shape[1] != len(policy.config.history_offsets):
        raise ValueError(
            f"anchors: expected {len(policy.config.history_offsets)} history frames (the policy's offsets "
            f"{policy.config.history_offsets}), received {anchors.history.shape[1]}"
        )
    policy.eval()
    plan = policy.plan(anchors.observation(camera, embodiment), seed=seed, return_foresight=True)
    assert plan.foresight is not None
    imagined_indices = [i.cpu() for i in plan.foresight.indices]
    num_scales = len(imagined_indices)
    future_indices = [i.cpu() for i in frame_indices(policy, anchors.future, num_scales)]
    current_indices = [i.cpu() for i in frame_indices(policy, anchors.current, num_scales)]
    imagined = _decode(policy, imagined_indices)  # (B, 3, Hg, Wg) in [0, 1]
    reconstructed = _decode(policy, future_indices)
    copy = _decode(policy, current_indices)
    size = tuple(imagined.shape[-2:])
    real = resize_frames(_as_float(anchors.future), size)
    now = resize_frames(_as_float(anchors.current), size)

    def mean_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
        values = psnr(a * 2 - 1, b * 2 - 1)
        return float(values[torch.isfinite(values)].mean()) if torch.isfinite(values).any() else float("inf")

    def errors(images: torch.Tensor) -> PositionError:
        return object_position_errors(anchors, _to_uint8(images), max_distance=max_distance)

    imagined_psnr = psnr(imagined * 2 - 1, real * 2 - 1)
    history_small = _to_uint8(resize_frames(_as_float(anchors.history).flatten(0, 1), size)).reshape(
        len(anchors), -1, *size, 3
    )
    rows = [
        ForesightRow(
            history=list(history_small[i]),
            predicted=_to_uint8(imagined[i : i + 1])[0],
            real=_to_uint8(real[i : i + 1])[0],
            reconstructed=_to_uint8(reconstructed[i : i + 1])[0],
            caption=f"PSNR {float(imagined_psnr[i]):.1f} dB",
        )
        for i in range(min(examples, len(anchors)))
    ]
    return ForesightSamples(
        rows=rows,
        samples=len(anchors),
        psnr_imagined=mean_psnr(imagined, real),
        psnr_tokenizer=mean_psnr(reconstructed, real),
        psnr_no_motion=mean_psnr(copy, real),
        psnr_no_motion_raw=mean_psnr(now, real),
        token_accuracy_imagined=token_accuracy(imagined_indices, future_indices),
        token_accuracy_copy=token_accuracy(current_indices, future_indices),
        object_errors={
            "imagined": errors(imagined),
            "copy": errors(copy),
            "tokenizer": errors(reconstructed),
            "real": object_position_errors(anchors, anchors.future, max_distance=max_distance),
        },
    )
