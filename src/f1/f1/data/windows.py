"""Training samples around a frame: current cameras, a frame history, a future-frame target, an action chunk.

For the frame t of an episode of T frames, a sample holds

- every camera at t (the policy's observation);
- the foresight camera at the history offsets (e.g. t-9, t-6, t-3, t), any number of them;
- the foresight camera at the future offset (e.g. t+3): the foresight target;
- the state at t and the action chunk t .. t+H-1;
- the task string and the embodiment name.

Frames that fall outside the episode are clamped to its first/last frame and flagged with a ``*_is_pad``
mask, exactly as LeRobot does for ``delta_timestamps`` (so padded steps can be left out of losses). The
keys are the ones :class:`f1.model.F1Policy` reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from f1.data.frame_codes import FrameCodes
from f1.data.reader import LeRobotDataset, to_float_chw
from f1.keys import (
    ACTION_KEY,
    FUTURE_INDICES_KEY,
    FUTURE_LATENTS_KEY,
    HISTORY_LATENTS_KEY,
    STATE_KEY,
)

HISTORY_KEY = "history"
FUTURE_KEY = "future_image"
PAD_SUFFIX = "_is_pad"


def clamp_offsets(
    frame: int, length: int, offsets: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices ``frame + offsets`` clamped into [0, length - 1], and which of them were outside.

    Args:
        frame: anchor frame t, 0 <= t < length.
        length: episode length T >= 1.
        offsets: (K,) integer offsets.

    Returns:
        (indices (K,) int64, is_pad (K,) bool).
    """
    raw = frame + np.asarray(offsets, dtype=np.int64)
    return np.clip(raw, 0, length - 1), (raw < 0) | (raw >= length)


@dataclass(frozen=True)
class WindowConfig:
    """Which frames a training sample holds, in steps (frames) relative to the anchor frame t.

    Attributes:
        history_offsets: foresight-camera frames before/at t, ascending and <= 0, e.g. (-9, -6, -3, 0) as
            in F1; empty for no history.
        future_offset: the foresight-camera frame to predict (> 0), e.g. 3; None for no future target.
        action_horizon: H, the action chunk t .. t+H-1.
        camera_keys: cameras given at t (default: all cameras of the dataset).
        foresight_camera: the camera of the history and the future target (default: the first camera).
        pad_state_to: zero-pad the state to this width (to batch embodiments of different widths).
        pad_action_to: zero-pad the action to this width.
        state_key: the state feature.
        action_key: the action feature.
    """

    history_offsets: tuple[int, ...] = (-9, -6, -3, 0)
    future_offset: int | None = 3
    action_horizon: int = 50
    camera_keys: tuple[str, ...] | None = None
    foresight_camera: str | None = None
    state_key: str = STATE_KEY
    action_key: str = ACTION_KEY
    pad_state_to: int | None = None
    pad_action_to: int | None = None

    def __post_init__(self) -> None:
        offsets = tuple(self.history_offsets)
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
            raise ValueError(f"history_offsets: expected a tuple of ints, got {self.history_offsets!r}")
        if list(offsets) != sorted(set(offsets)) or (offsets and offsets[-1] > 0):
            raise ValueError(f"history_offsets: expected distinct ascending offsets <= 0, got {offsets}")
        for name in ("pad_state_to", "pad_action_to"):
            width = getattr(self, name)
            if width is not None and (not isinstance(width, int) or width < 1):
                raise ValueError(f"{name}: expected a positive int or None, got {width!r}")
        object.__setattr__(self, "history_offsets", offsets)
        if self.future_offset is not None and (
            not isinstance(self.future_offset, int) or self.future_offset <= 0
        ):
            raise ValueError(f"future_offset: expected a positive int or None, got {self.future_offset!r}")
        if not isinstance(self.action_horizon, int) or self.action_horizon < 1:
            raise ValueError(f"action_horizon: expected a positive int, got {self.action_horizon!r}")
        if self.camera_keys is not None:
            object.__setattr__(self, "camera_keys", tuple(self.camera_keys))

    @classmethod
    def from_delta_timestamps(
        cls,
        history_s: Sequence[float],
        future_s: float | None,
        action_horizon: int,
        fps: float,
        **kwargs: Any,
    ) -> WindowConfig:
        """Offsets given in seconds (LeRobot's ``delta_timestamps``), converted with the dataset fps."""
        steps = []
        for t in [*history_s, *([future_s] if future_s is not None else [])]:
            step = round(t * fps)
            if abs(t * fps - step) > 1e-4 * fps:
                raise ValueError(f"history_s/future_s: {t}s is not a multiple of 1/{fps}s")
            steps.append(step)
        history = tuple(steps[: len(history_s)])
        future = steps[-1] if future_s is not None else None
        return cls(history_offsets=history, future_offset=future, action_horizon=action_horizon, **kwargs)


class WindowedDataset(torch.utils.data.Dataset):
    """Training samples of one LeRobot dataset; sample i is anchored at frame i of the dataset.

    A sample (before batching)::

        "observation.images.<camera>": float32 (3, H, W) in [0, 1] at t, for every camera
        "history":                     float32 (K, 3, H, W) foresight camera, K = len(history_offsets)
        "history_is_pad":              bool (K,)
        "future_image":                float32 (3, H, W) foresight camera at t + future_offset
        "future_image_is_pad":         bool ()
        "observation.state":           float32 (S,) at t, raw
        "action":                      float32 (H, A), steps t .. t+H-1, raw
        "action_is_pad":               bool (H,), True past the episode end
        "task": str, "embodiment": str, "episode_index": int, "frame_index": int

    History and future keys are absent when the config asks for none (or the dataset has no camera).

    With ``frame_codes`` (the foresight camera's tokenizer codes of every frame), the history and the future
    are read from the codes instead of decoded: ``"history.latents"`` float32 (K, Cz, h, w) replaces
    ``"history"``, and ``"future_image.latents"`` (Cz, h, w) with ``"future_image.indices"`` int64 (L,)
    replace ``"future_image"`` (the masks stay).

    Args:
        dataset: the frames.
        config: offsets, horizon, cameras.
        embodiment: name of the robot that recorded the data (default: the dataset's robot_type).
        frame_codes: codes of the foresight camera's frames (:class:`f1.data.FrameCodes`), or None.
    """

    def __init__(
        self,
        dataset: LeRobotDataset,
        config: WindowConfig | None = None,
        embodiment: str | None = None,
        frame_codes: FrameCodes | None = None,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.config = config or WindowConfig()
        name = embodiment if embodiment is not None else dataset.robot_type
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"embodiment: expected a non-empty name (the dataset has robot_type={dataset.robot_type!r}), "
                f"got {embodiment!r}"
            )
        self.embodiment = name
        cameras = (
            self.config.camera_keys if self.config.camera_keys is not None else tuple(dataset.camera_keys)
        )
        unknown = [c for c in cameras if c not in dataset.camera_keys]
        if unknown:
            raise ValueError(
                f"config.camera_keys: {unknown} not in the dataset's cameras {dataset.camera_keys}"
            )
        self.camera_keys = cameras
        foresight = self.config.foresight_camera
        if foresight is not None and foresight not in dataset.camera_keys:
            raise ValueError(
                f"config.foresight_camera: {foresight!r} not in the dataset's cameras {dataset.camera_keys}"
            )
        self.foresight_camera = foresight if foresight is not None else (cameras[0] if cameras else None)
        for key in (self.config.state_key, self.config.action_key):
            if key not in dataset.features:
                raise ValueError(
                    f"config: feature {key!r} is not in the dataset ({sorted(dataset.features)})"
                )
        self._state = torch.from_numpy(np.asarray(dataset.column(self.config.state_key), dtype=np.float32))
        self._action = torch.from_numpy(np.asarray(dataset.column(self.config.action_key), dtype=np.float32))
        for key, width in (
            (self.config.state_key, self.config.pad_state_to),
            (self.config.action_key, self.config.pad_action_to),
        ):
            values = self._state if key == self.config.state_key else self._action
            if width is not None and values.shape[-1] > width:
                raise ValueError(
                    f"config: {key!r} has {values.shape[-1]} dims, more than the padded width {width}"
                )
        self._action_offsets = np.arange(self.config.action_horizon)
        if frame_codes is not None:
            if not isinstance(frame_codes, FrameCodes):
                raise ValueError(f"frame_codes: expected FrameCodes, got {type(frame_codes).__name__}")
            if frame_codes.camera != self.foresight_camera:
                raise ValueError(
                    f"frame_codes: codes of {frame_codes.camera!r}, expected the foresight camera "
                    f"{self.foresight_camera!r}"
                )
            if frame_codes.num_frames != dataset.num_frames:
                raise ValueError(
                    f"frame_codes: expected codes of the dataset's {dataset.num_frames} frames, "
                    f"got {frame_codes.num_frames}"
                )
        self.frame_codes = frame_codes

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def state_dim(self) -> int:
        return int(self._state.shape[-1]) if self._state.dim() > 1 else 1

    @property
    def action_dim(self) -> int:
        return int(self._action.shape[-1]) if self._action.dim() > 1 else 1

    def __getitem__(self, index: int) -> dict[str, Any]:
        episode, frame = self.dataset.locate(int(index))
        length = self.dataset.episodes[episode].length
        start = int(self.dataset.episode_starts[episode])
        cfg = self.config
        sample: dict[str, Any] = {}
        for key in self.camera_keys:
            if key != self.foresight_camera:
                sample[key] = to_float_chw(self.dataset.camera_frames(key, episode, [frame]))[0]
        if self.foresight_camera is not None:
            sample.update(self._foresight_frames(episode, frame, length))
        action_idx, action_pad = clamp_offsets(frame, length, self._action_offsets)
        sample[cfg.state_key] = _pad_last(self._state[start + frame], cfg.pad_state_to)
        sample[cfg.action_key] = _pad_last(self._action[start + action_idx], cfg.pad_action_to)
        sample[cfg.action_key + PAD_SUFFIX] = torch.from_numpy(action_pad)
        sample["task"] = self.dataset.task_of(episode, frame)
        sample["embodiment"] = self.embodiment
        sample["episode_index"] = self.dataset.episodes[episode].episode_index
        sample["frame_index"] = frame
        return sample

    def _foresight_frames(self, episode: int, frame: int, length: int) -> dict[str, torch.Tensor]:
        """Current frame, history and future of the foresight camera, decoded in one call."""
        cfg = self.config
        history_idx, history_pad = clamp_offsets(frame, length, cfg.history_offsets)
        if self.frame_codes is not None:
            return self._coded_foresight(episode, frame, length, history_idx, history_pad)
        wanted = [np.array([frame]), history_idx]
        if cfg.future_offset is not None:
            future_idx, future_pad = clamp_offsets(frame, length, [cfg.future_offset])
            wanted.append(future_idx)
        assert self.foresight_camera is not None
        frames = to_float_chw(
            self.dataset.camera_frames(self.foresight_camera, episode, np.concatenate(wanted))
        )
        out = {self.foresight_camera: frames[0]}
        if history_idx.size:
            out[HISTORY_KEY] = frames[1 : 1 + history_idx.size]
            out[HISTORY_KEY + PAD_SUFFIX] = torch.from_numpy(history_pad)
        if cfg.future_offset is not None:
            out[FUTURE_KEY] = frames[-1]
            out[FUTURE_KEY + PAD_SUFFIX] = torch.tensor(bool(future_pad[0]))
        return out

    def _coded_foresight(
        self, episode: int, frame: int, length: int, history_idx: np.ndarray, history_pad: np.ndarray
    ) -> dict[str, torch.Tensor]:
        """The current frame decoded; history and future read from :attr:`frame_codes`."""
        assert self.foresight_camera is not None
        assert self.frame_codes is not None
        cfg, codes = self.config, self.frame_codes
        start = int(self.dataset.episode_starts[episode])
        current = to_float_chw(self.dataset.camera_frames(self.foresight_camera, episode, [frame]))[0]
        out = {self.foresight_camera: current}
        if history_idx.size:
            out[HISTORY_LATENTS_KEY] = codes.latents[torch.from_numpy(start + history_idx)]
            out[HISTORY_KEY + PAD_SUFFIX] = torch.from_numpy(history_pad)
        if cfg.future_offset is not None:
            future_idx, future_pad = clamp_offsets(frame, length, [cfg.future_offset])
            row = start + int(future_idx[0])
            out[FUTURE_LATENTS_KEY] = codes.latents[row]
            out[FUTURE_INDICES_KEY] = codes.indices[row]
            out[FUTURE_KEY + PAD_SUFFIX] = torch.tensor(bool(future_pad[0]))
        return out


def _pad_last(x: torch.Tensor, width: int | None) -> torch.Tensor:
    """Zero-pad the last dimension of ``x`` to ``width`` (unchanged when None)."""
    return x if width is None else torch.nn.functional.pad(x, (0, width - x.shape[-1]))


def pad_collate(
    samples: Sequence[Mapping[str, Any]], keys: Sequence[str] = (STATE_KEY, ACTION_KEY)
) -> dict[str, Any]:
    """Batch samples whose state/action widths differ (several embodiments in one batch).

    The last dimension of each of ``keys`` is zero-padded to the widest sample and a
    ``"<key>_dim_mask"`` (B, D_max) bool marks the real dimensions; everything else is batched as
    ``torch.utils.data.default_collate`` does (strings become lists).
    """
    if not samples:
        raise ValueError("samples: expected at least one sample")
    padded = [dict(s) for s in samples]
    masks: dict[str, torch.Tensor] = {}
    for key in keys:
        if key not in padded[0]:
            continue
        width = max(int(s[key].shape[-1]) for s in padded)
        mask = torch.zeros(len(padded), width, dtype=torch.bool)
        for i, s in enumerate(padded):
            x = s[key]
            mask[i, : x.shape[-1]] = True
            s[key] = torch.nn.functional.pad(x, (0, width - x.shape[-1]))
        masks[key + "_dim_mask"] = mask
    batch = torch.utils.data.default_collate(padded)
    batch.update(masks)
    return batch
