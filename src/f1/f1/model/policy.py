"""``F1Policy``: the robot-facing part around an :class:`~f1.model.F1Model` (LeRobot's and openpi's split).

The model is the network (training losses, :meth:`F1Model.sample`); the policy parses and normalizes each
observation once, keeps the episode's history frames with each frame's tokenizer latent (a replan encodes
only the frames it has not seen), the action queue and the random generator, and saves/loads the model:

- :meth:`F1Policy.select_action` / :meth:`F1Policy.reset`: LeRobot's control loop (one action per call,
  replanning every ``action.n_action_steps`` calls); :meth:`F1Policy.set_execution` makes it compute the
  next chunk while the current one executes (``"async"``), and inpaint it toward the current one
  (``"rtc"``, real-time chunking);
- :meth:`F1Policy.plan` / :meth:`F1Policy.predict_action_chunk`: a whole chunk for an observation that
  carries its own history (with ``previous_chunk``: real-time chunking).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

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
from f1.model.realtime_chunking import PreviousChunk

__all__ = [
    "EXECUTION_MODES",
    "ExecutionMode",
    "ExecutionSettings",
    "F1Policy",
    "ForesightSource",
    "load_policy",
    "save_policy",
]

ExecutionMode = Literal["sync", "async", "rtc"]
EXECUTION_MODES: tuple[str, ...] = get_args(ExecutionMode)
"""How :meth:`F1Policy.select_action` schedules inference (see :meth:`F1Policy.set_execution`)."""

ForesightSource = Callable[[list[torch.Tensor]], list[torch.Tensor]]
"""The current frame's token indices per scale -> the foresight's indices to plan with (see
:attr:`F1Policy.foresight_source`)."""


@dataclass(frozen=True)
class ExecutionSettings:
    """How :meth:`F1Policy.select_action` schedules inference (set by :meth:`F1Policy.set_execution`).

    Attributes:
        mode: ``"sync"`` (plan when the queue is empty; the default, LeRobot's loop), ``"async"`` (start
            the next plan when ``inference_delay`` queued actions remain; they still execute, then the new
            chunk takes over from its step ``inference_delay``) or ``"rtc"`` (as ``"async"``, the new chunk
            inpainted toward the current chunk's remaining actions: real-time chunking).
        inference_delay: ``d``, control steps one inference takes (0 in mode ``"sync"``).
        execution_horizon: ``s``, actions executed from each chunk (default ``action.n_action_steps``).
        background: run the inference on a worker thread, so that the calls during it return at once (a
            real robot loop); the switch still happens after exactly ``d`` calls (waiting if needed), so
            the actions are the same as without it.
    """

    mode: ExecutionMode = "sync"
    inference_delay: int = 0
    execution_horizon: int | None = None
    background: bool = False


@dataclass
class _NextChunk:
    """A chunk whose inference started from an earlier observation; it takes over when the queue empties."""

    plan: Future[Plan] | Plan
    start: int  # the step of the new chunk executed first (the inference delay)

    def result(self) -> Plan:
        return self.plan.result() if isinstance(self.plan, Future) else self.plan


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
        self._execution = ExecutionSettings()
        self._executor: ThreadPoolExecutor | None = None
        self._chunk: Plan | None = None  # the chunk executing now
        self._chunk_end = 0  # its step after the last queued one
        self._next_chunk: _NextChunk | None = None
        self.last_plan: Plan | None = None
        """The chunk whose actions :meth:`select_action` returns now (set when a chunk takes over)."""
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
        previous_chunk: torch.Tensor | None = None,
        inference_delay: int = 0,
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
            previous_chunk: real-time chunking: the raw actions ``(B, H', A)`` or ``(H', A)``,
                ``H' <= H``, of the chunk executing now that have not executed when this observation was
                taken, aligned so ``previous_chunk[:, i]`` is what it planned for the new chunk's step
                ``i``. The new chunk is inpainted toward them with the ``action.rtc`` settings: its first
                ``inference_delay`` steps frozen, the rest of the overlap softly. None: plain sampling.
            inference_delay: ``d``, the actions that execute while this plan is computed,
                ``0 <= d <= H'`` (only with ``previous_chunk``).

        Returns:
            :class:`~f1.model.Plan` with raw actions ``(B, H, A)``.
        """
        start = time.perf_counter()
        guidance = self._previous_chunk(previous_chunk, inference_delay)
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
            guidance=guidance,
        )
        if not profile:
            plan.latency_ms = {"total": (time.perf_counter() - start) * 1e3}
        return plan

    @staticmethod
    def _previous_chunk(previous_chunk: torch.Tensor | None, inference_delay: int) -> PreviousChunk | None:
        if previous_chunk is None:
            if isinstance(inference_delay, bool) or inference_delay != 0:
                raise InputError(
                    f"inference_delay: expected 0 without a previous_chunk, received {inference_delay!r}"
                )
            return None
        return PreviousChunk(previous_chunk, inference_delay)

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
    @property
    def execution(self) -> ExecutionSettings:
        """How :meth:`select_action` schedules inference (:meth:`set_execution` changes it)."""
        return self._execution

    def set_execution(
        self,
        mode: ExecutionMode = "sync",
        *,
        inference_delay: int = 0,
        execution_horizon: int | None = None,
        background: bool = False,
    ) -> None:
        """Choose how :meth:`select_action` schedules inference; the episode starts over (as :meth:`reset`,
        the generator kept).

        Args:
            mode: ``"sync"``, ``"async"`` or ``"rtc"`` (see :class:`ExecutionSettings`).
            inference_delay: ``d``, control steps one inference takes; 0 in mode ``"sync"`` (nothing executes
                while it plans), ``d <= s`` and ``d + s <= action.chunk_size`` in the others.
            execution_horizon: ``s``, actions executed from each chunk (default ``action.n_action_steps``),
                ``1 <= s <= action.chunk_size``.
            background: compute the inference on one worker thread (see :class:`ExecutionSettings`).

        Raises :class:`~f1.errors.InputError` naming the argument (the settings are then unchanged).
        """
        horizon = self.config.action.chunk_size
        if mode not in EXECUTION_MODES:
            raise InputError(f"mode: expected one of {list(EXECUTION_MODES)}, received {mode!r}")
        steps = self.config.action.n_action_steps if execution_horizon is None else execution_horizon
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= horizon:
            raise InputError(f"execution_horizon: expected an int in [1, {horizon}], received {steps!r}")
        delay = inference_delay
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise InputError(f"inference_delay: expected an int >= 0, received {delay!r}")
        if mode == "sync" and delay:
            raise InputError(
                f"inference_delay: mode 'sync' plans when the queue is empty and executes nothing meanwhile, "
                f"expected 0, received {delay}"
            )
        if delay > min(steps, horizon - steps):
            raise InputError(
                f"inference_delay: expected at most min(execution_horizon, chunk_size - execution_horizon) = "
                f"{min(steps, horizon - steps)} (one inference at a time, and the new chunk's steps "
                f"[d, d + s) must exist), received {delay}"
            )
        if not isinstance(background, bool):
            raise InputError(f"background: expected a bool, received {background!r}")
        self._finish_next_chunk()
        if self._executor is not None and not background:
            self._executor.shutdown(wait=True)
            self._executor = None
        if background and self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="f1-policy-inference")
        self._execution = ExecutionSettings(mode, delay, execution_horizon, background)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: empty the action queue and the frame history (an inference still running is
        waited for and dropped); reseed when ``seed`` is given."""
        self._finish_next_chunk()
        self._action_queue.clear()
        self._frames.clear()
        self._episode_embodiment = None
        self._chunk, self._chunk_end = None, 0
        if seed is not None:
            self._generator = torch.Generator().manual_seed(seed)

    def _finish_next_chunk(self) -> None:
        """Wait for an inference in flight (it uses the generator) and drop it."""
        pending, self._next_chunk = self._next_chunk, None
        if pending is not None and isinstance(pending.plan, Future):
            pending.plan.exception()  # waits; its error belongs to the dropped chunk

    @torch.no_grad()
    def select_action(self, observation: Mapping[str, Any]) -> torch.Tensor:
        """The next action ``(B, A)`` (``(A,)`` for an unbatched observation). Call :meth:`reset` at the
        start of each episode.

        In mode ``"sync"`` (the default) it plans when the queue is empty and executes ``s`` actions of each
        chunk (``s``: ``action.n_action_steps`` unless :meth:`set_execution` says otherwise). In modes
        ``"async"`` and ``"rtc"`` the episode's first chunk is planned so, and afterwards the next chunk's
        inference starts from the call that finds ``d`` actions queued; those ``d`` actions still execute,
        and on the call after them the new chunk takes over from its step ``d`` (its steps ``[d, d + s)``
        are queued). Mode ``"rtc"`` plans the new chunk with the current one's remaining actions as
        ``previous_chunk`` (:meth:`plan`).

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
        settings = self._execution
        steps = settings.execution_horizon or self.config.action.n_action_steps
        delay = settings.inference_delay
        queue = self._action_queue
        chunk, chunk_end, next_chunk = self._chunk, self._chunk_end, self._next_chunk
        refill = None  # (the chunk taking over, its first step to execute)
        if settings.mode == "sync" or chunk is None:
            if not queue:
                refill = (self._plan_chunk(inputs, frames, None), 0)
        elif not queue:
            if next_chunk is None:  # delay 0 (or the last inference failed): plan now, nothing executes
                next_chunk = self._start_chunk(inputs, frames, self._remaining(chunk, chunk_end, 0), 0)
            try:
                refill = (next_chunk.result(), next_chunk.start)
            except BaseException:
                self._next_chunk = None
                raise
            next_chunk = None
        if refill is not None:
            chunk, chunk_end = refill[0], refill[1] + steps
        queued = steps if refill is not None else len(queue)
        if settings.mode != "sync" and delay and next_chunk is None and queued == delay:
            # d actions left: they execute while the next chunk is computed from this observation
            next_chunk = self._start_chunk(inputs, frames, self._remaining(chunk, chunk_end, delay), delay)
        # commit
        self._frames = deque(frames)
        if refill is not None:
            self._action_queue.extend(chunk.actions[:, chunk_end - steps : chunk_end].transpose(0, 1))
            self.last_plan = chunk
        self._chunk, self._chunk_end, self._next_chunk = chunk, chunk_end, next_chunk
        self._episode_embodiment = name
        action = self._action_queue.popleft()
        return action if batched else action[0]

    def _remaining(self, chunk: Plan, chunk_end: int, delay: int) -> PreviousChunk | None:
        """In mode ``"rtc"``: ``chunk``'s actions from the ``delay`` last queued ones on (None otherwise,
        or when nothing of it is left)."""
        if self._execution.mode != "rtc" or chunk_end - delay >= chunk.actions.shape[1]:
            return None
        return PreviousChunk(chunk.actions[:, chunk_end - delay :], delay)

    def _plan_chunk(self, inputs: PolicyInputs, frames: list[_Frame], previous: PreviousChunk | None) -> Plan:
        """A chunk for the observation ``inputs`` (parsed without history) with the history ``frames``."""
        if self.config.has_history:
            inputs.history_latents, inputs.history_valid = self._history_window(frames)
        given = None
        if self.foresight_source is not None:
            given = self.foresight_source(self._current_indices(frames[-1]))
        return self.model.sample(
            inputs, generator=self._generator, foresight_indices=given, guidance=previous
        )

    def _start_chunk(
        self, inputs: PolicyInputs, frames: list[_Frame], previous: PreviousChunk | None, delay: int
    ) -> _NextChunk:
        """The next chunk's inference, on the worker thread (``background``) or now."""
        if self._executor is None:
            return _NextChunk(self._plan_chunk(inputs, frames, previous), delay)
        frames = list(frames)  # the loop appends to its own list meanwhile

        def plan() -> Plan:
            with torch.no_grad():  # grad mode is per thread
                return self._plan_chunk(inputs, frames, previous)

        return _NextChunk(self._executor.submit(plan), delay)

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
