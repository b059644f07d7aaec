"""``F1Policy``: the robot-facing part around an :class:`~f1.model.F1Model` (LeRobot's and openpi's split).

The model is the network (training losses, :meth:`F1Model.sample`); the policy parses and normalizes each
observation once, keeps the episode's history frames with each frame's tokenizer latent (a replan encodes
only the frames it has not seen), the action queue and the random generator, and saves/loads the model:

- :meth:`F1Policy.select_action` / :meth:`F1Policy.reset`: LeRobot's control loop (one action per call,
  replanning every ``action.n_action_steps`` calls);
- :meth:`F1Policy.plan` / :meth:`F1Policy.predict_action_chunk`: a whole chunk for an observation that
  carries its own history.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from f1.errors import ConfigError, InputError
from f1.keys import IMAGE_KEY_PREFIX, STATE_KEY
from f1.model.checkpoint import load_model, save_model
from f1.model.config import F1Config
from f1.model.embodiment import Embodiment
from f1.model.f1_model import F1Model, Plan
from f1.model.inputs import PolicyInputs, resize_frames
from f1.model.language import TextTokenizer
from f1.model.latency import LatencyRecorder

__all__ = ["F1Policy", "ForesightSource", "load_policy", "save_policy"]

ForesightSource = Callable[[list[torch.Tensor]], list[torch.Tensor]]
"""The current frame's token indices per scale -> the foresight's indices to plan with (see
:attr:`F1Policy.foresight_source`)."""


@dataclass
class _Frame:
    """One control step's foresight-camera frame ``(B, 3, H_g, W_g)`` in [-1, 1], and its latent once
    encoded."""

    image: torch.Tensor
    latent: torch.Tensor | None = None


class F1Policy:
    """The F1 policy a robot loop talks to.

    Args:
        model: an :class:`~f1.model.F1Model`, or an :class:`~f1.model.F1Config` to build one from.
        tokenizer: the text tokenizer when ``model`` is a config (see :class:`~f1.model.F1Model`).

    Observations hold raw values: ``observation.images.<camera>`` ``(B, 3, H, W)`` or ``(3, H, W)``,
    ``observation.state`` ``(B, S)`` or ``(S,)``, ``task`` and optionally ``embodiment`` (the policy
    normalizes and unnormalizes). :meth:`plan` also takes ``history`` (see :class:`~f1.model.F1Model`).
    """

    def __init__(self, model: F1Model | F1Config, *, tokenizer: Any = None) -> None:
        if isinstance(model, F1Config):
            model = F1Model(model, tokenizer=tokenizer)
        elif not isinstance(model, F1Model):
            raise ConfigError(f"model: expected an F1Model or an F1Config, received {type(model).__name__}")
        elif tokenizer is not None:
            raise ConfigError("tokenizer: give the tokenizer to the F1Model when passing a model")
        self.model = model
        self._generator = torch.Generator().manual_seed(0)
        self._action_queue: deque[torch.Tensor] = deque()
        self._frames: deque[_Frame] = deque()
        self._episode_embodiment: str | None = None
        self.last_plan: Plan | None = None
        self.foresight_source: ForesightSource | None = None
        """With a callable here, :meth:`select_action` plans with the foresight it returns instead of the
        sampled one (counterfactual checks, mode ``f1``): it receives the current frame's token indices
        per scale ``[(B, h_k * w_k)]`` and returns the indices to use, of the same shapes."""

    # --- the model --------------------------------------------------------------------------------------
    @property
    def config(self) -> F1Config:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def tokenizer(self) -> TextTokenizer:
        return self.model.tokenizer

    def to(self, device: torch.device | str) -> F1Policy:
        """Move the model to ``device`` (and forget the episode: its frames live on the old device)."""
        self.model.to(device)
        self.reset()
        return self

    def eval(self) -> F1Policy:
        """The model in eval mode; returns ``self``."""
        self.model.eval()
        return self

    def compile(self, *, mode: str | None = None, dynamic: bool = False) -> F1Policy:
        """Compile the model's inference with ``torch.compile`` (:meth:`F1Model.compile_inference`);
        returns ``self``. The first plan of each shape pays the compilation."""
        self.model.compile_inference(mode=mode, dynamic=dynamic)
        return self

    def add_embodiment(self, embodiment: Embodiment) -> None:
        """Register a new embodiment with a fresh adapter (see :meth:`F1Model.add_embodiment`)."""
        self.model.add_embodiment(embodiment)

    # --- persistence ----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` (tensors + config metadata) and ``config.json`` into ``directory``."""
        return save_model(self.model, directory)

    @classmethod
    def load(cls, path: str | Path, *, device: torch.device | str = "cpu", tokenizer: Any = None) -> F1Policy:
        """A policy saved by :meth:`save` or written by ``f1 convert`` (tensors only; every key and shape
        checked)."""
        return cls(load_model(path, device=device, tokenizer=tokenizer))

    # --- one chunk ------------------------------------------------------------------------------------
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
        profile: bool = False,
    ) -> Plan:
        """An action chunk for one embodiment (see :meth:`F1Model.sample` for the sampling arguments).

        Args:
            observation: cameras, state, task, embodiment and, with history modes, ``history``.
            num_scales, return_foresight, decode_foresight, use_cache, noise: as in :meth:`F1Model.sample`.
            generator: the one source of randomness for foresight tokens and flow noise (default: the
                policy's, set by :meth:`reset`).
            seed: build a fresh generator from this seed instead.
            profile: time every module (synchronizing the device around each); otherwise only the host
                wall time of the whole call is measured.

        Returns:
            :class:`~f1.model.Plan` with raw actions ``(B, H, A)``.
        """
        start = time.perf_counter()
        if profile:
            self.model.tokenizer  # noqa: B018 (built once, on first use, outside the timed modules)
        recorder = LatencyRecorder(self.device, enabled=profile)
        with recorder.measure("preprocess"):
            generator = self._resolve_generator(generator, seed)
            inputs = self.model.parse(observation)
        plan = self.model.sample(
            inputs,
            generator=generator,
            num_scales=num_scales,
            noise=noise,
            return_foresight=return_foresight,
            decode_foresight=decode_foresight,
            use_cache=use_cache,
            recorder=recorder,
        )
        if not profile:
            plan.latency_ms = {"total": (time.perf_counter() - start) * 1e3}
        return plan

    def predict_action_chunk(self, observation: Mapping[str, Any], **kwargs: Any) -> torch.Tensor:
        """LeRobot's name: raw actions ``(B, H, A)`` (see :meth:`plan` for the arguments)."""
        return self.plan(observation, **kwargs).actions

    def _resolve_generator(self, generator: torch.Generator | None, seed: int | None) -> torch.Generator:
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise InputError(f"seed: expected an int, received {seed!r}")
            return torch.Generator().manual_seed(seed)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InputError(f"generator: expected a torch.Generator, received {type(generator).__name__}")
        return generator or self._generator

    # --- LeRobot-style control loop --------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Start an episode: empty the action queue and the frame history; reseed when ``seed`` is given."""
        self._action_queue.clear()
        self._frames.clear()
        self._episode_embodiment = None
        if seed is not None:
            self._generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def select_action(self, observation: Mapping[str, Any]) -> torch.Tensor:
        """The next action ``(B, A)`` (``(A,)`` for an unbatched observation), replanning every
        ``action.n_action_steps`` calls. Call :meth:`reset` at the start of each episode.

        Every call validates the whole observation, queued actions or not, and a call that raises leaves
        the queue and the history as they were.
        """
        observation, batched = self._batched(observation)
        inputs = self.model.parse(observation, need_history=False)
        names = [g.name for g in inputs.groups]
        if len(names) != 1:
            raise InputError(f"embodiment: one embodiment per episode, received {names}")
        name = names[0]
        if self._episode_embodiment not in (None, name):
            raise InputError(
                f"embodiment: the episode started with {self._episode_embodiment!r}, received {name!r}; "
                "call reset() between episodes"
            )
        frames = list(self._frames)
        if self.config.has_history:
            if frames and frames[-1].image.shape[0] != inputs.batch_size:
                raise InputError(
                    f"observation: the episode runs {frames[-1].image.shape[0]} environments, received a "
                    f"batch of {inputs.batch_size}; call reset() between episodes"
                )
            frames.append(_Frame(self._history_frame(inputs)))
            frames = frames[-self._frames_kept :]
        steps = None
        if not self._action_queue:
            if self.config.has_history:
                inputs.history_latents, inputs.history_valid = self._history_window(frames)
            given = None
            if self.foresight_source is not None:
                given = self.foresight_source(self._current_indices(frames[-1]))
            plan = self.model.sample(inputs, generator=self._generator, foresight_indices=given)
            self.last_plan = plan
            steps = plan.actions[:, : self.config.action.n_action_steps]
        # commit
        self._frames = deque(frames)
        if steps is not None:
            self._action_queue.extend(steps.transpose(0, 1))
        self._episode_embodiment = name
        action = self._action_queue.popleft()
        return action if batched else action[0]

    def _current_indices(self, frame: _Frame) -> list[torch.Tensor]:
        """The current frame's token indices per scale (for :attr:`foresight_source`)."""
        if not self.config.has_foresight:
            raise ConfigError(f"foresight_source: mode {self.config.mode!r} reads no foresight")
        generation = self.model.generation
        assert generation is not None
        _, codes = generation.frame_codes(frame.image)
        scales = self.config.generation.inference_scales
        sizes = list(generation.scale_tokens(scales))
        return list(codes[:, : sum(sizes)].split(sizes, dim=1))

    @property
    def _frames_kept(self) -> int:
        return -min(self.config.history_offsets) + 1

    def _history_frame(self, inputs: PolicyInputs) -> torch.Tensor:
        """The foresight camera's frame at the tokenizer's size, in [-1, 1]."""
        camera = self.config.cameras.index(self.config.foresight_camera)
        generation = self.model.generation
        assert generation is not None  # history modes have one
        return resize_frames(inputs.images[:, camera], tuple(generation.image_size)) * 2 - 1

    def _history_window(self, frames: list[_Frame]) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents ``(B, T, Cz, h, w)`` at the history offsets and their ``(B, T)`` validity; frames before
        the episode start repeat its first frame and are marked as padding. Frames without a latent are
        encoded here, each once."""
        generation = self.model.generation
        assert generation is not None
        indices = [len(frames) - 1 + offset for offset in self.config.history_offsets]
        window = [frames[max(index, 0)] for index in indices]
        missing = list({id(f): f for f in window if f.latent is None}.values())
        if missing:
            latents = generation.quantized_latents(torch.cat([f.image for f in missing]))
            for frame, latent in zip(missing, latents.split(missing[0].image.shape[0])):
                frame.latent = latent
        stacked = torch.stack([f.latent for f in window], dim=1)  # type: ignore[misc]
        valid = torch.tensor([index >= 0 for index in indices], device=stacked.device)
        return stacked, valid.expand(stacked.shape[0], -1)

    def _batched(self, observation: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        if not isinstance(observation, Mapping):
            raise InputError(f"observation: expected a mapping, received {type(observation).__name__}")
        if STATE_KEY not in observation:
            raise InputError(f"{STATE_KEY}: missing from the observation (expected (S,) or (B, S))")
        state = observation[STATE_KEY]
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


def save_policy(policy: F1Policy | F1Model, directory: str | Path) -> Path:
    """Write a policy's (or a model's) checkpoint into ``directory`` (:func:`f1.model.save_model`)."""
    return save_model(policy.model if isinstance(policy, F1Policy) else policy, directory)


def load_policy(path: str | Path, *, device: torch.device | str = "cpu", tokenizer: Any = None) -> F1Policy:
    """:meth:`F1Policy.load`."""
    return F1Policy.load(path, device=device, tokenizer=tokenizer)
