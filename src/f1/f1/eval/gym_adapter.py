"""Evaluation in any gymnasium environment: a declared mapping from its observations, actions and success
signal onto a policy's inputs, and the wrapper that applies it.

The mapping is data (:class:`GymAdapter`, read from YAML or JSON), never code::

    embodiment: reach2d          # the policy's name for this robot (default: the policy's only one)
    cameras: {front: pixels}     # policy camera -> observation key (nested keys: "pixels/top")
    state: agent_pos             # observation key of the proprioceptive state
    instruction: reach the red dot   # a fixed instruction, or instruction_key: <observation key>
    image_layout: HWC            # HWC (gymnasium's usual uint8 (H, W, 3)) or CHW
    success_key: success         # the info key that says the episode succeeded
    clip_actions: true           # clip the policy's actions into the action space's bounds
    max_steps: 200               # default: the environment's spec.max_episode_steps

:class:`GymTask` wraps one environment so that :func:`f1.eval.evaluate` runs it like a table task: its
observations come out in the policy's layout (``observation.images.<camera>`` ``(3, H, W)``,
``observation.state`` ``(S,)``, ``task``), ``info["success"]`` is the declared success, an episode ends at
its first success or after ``max_steps``, and its ``action_space`` is a :class:`f1.envs.BoxSpace`.
Nothing here imports gymnasium: any object with gymnasium's ``reset``/``step``/``action_space`` works.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from f1.envs import BoxSpace
from f1.errors import ConfigError, InputError
from f1.keys import STATE_KEY, TASK_KEY, camera_key

__all__ = [
    "IMAGE_LAYOUTS",
    "GymAdapter",
    "GymTask",
    "SuccessPredicate",
    "check_policy_fits",
    "load_env_factory",
    "parse_seeds",
    "results_table",
]

IMAGE_LAYOUTS: tuple[str, ...] = ("HWC", "CHW")

SuccessPredicate = Callable[[Any, float, Mapping[str, Any]], bool]
"""``(raw observation, reward, info) -> success`` after one step (replaces the adapter's success key)."""


@dataclass(frozen=True)
class GymAdapter:
    """How one environment's observations, actions and success map onto a policy (see the module docs).

    Attributes:
        cameras: policy camera name -> observation key of its image (empty: for baselines only).
        state: observation key of the state vector ``(S,)`` (None: the policy reads no state, ``S = 0``).
        embodiment: the policy's embodiment name for the robot (None: the policy's only embodiment).
        instruction: a fixed language instruction for every episode.
        instruction_key: or the observation key that holds the instruction string.
        image_layout: ``"HWC"`` (``(H, W, 3)``) or ``"CHW"`` (``(3, H, W)``); uint8 or float in [0, 1].
        success_key: the info key whose truthy value marks success.
        success_reward: or a reward threshold: a step with ``reward >= success_reward`` succeeds.
        clip_actions: clip actions into the action space's bounds before ``env.step``.
        max_steps: steps per episode (None: the environment's ``spec.max_episode_steps``).
    """

    cameras: Mapping[str, str] = field(default_factory=dict)
    state: str | None = None
    embodiment: str | None = None
    instruction: str | None = None
    instruction_key: str | None = None
    image_layout: str = "HWC"
    success_key: str = "success"
    success_reward: float | None = None
    clip_actions: bool = True
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.cameras, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in self.cameras.items()
        ):
            raise ConfigError(
                f"adapter.cameras: expected a mapping of camera name -> observation key, received "
                f"{self.cameras!r}"
            )
        object.__setattr__(self, "cameras", dict(self.cameras))
        for name in ("state", "embodiment", "instruction", "instruction_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"adapter.{name}: expected a string or null, received {value!r}")
        if not isinstance(self.success_key, str) or not self.success_key:
            raise ConfigError(
                f"adapter.success_key: expected a non-empty string, received {self.success_key!r}"
            )
        if self.instruction is not None and self.instruction_key is not None:
            raise ConfigError("adapter: give instruction (fixed text) or instruction_key, not both")
        if self.image_layout not in IMAGE_LAYOUTS:
            raise ConfigError(
                f"adapter.image_layout: expected one of {list(IMAGE_LAYOUTS)}, received {self.image_layout!r}"
            )
        if self.success_reward is not None and (
            isinstance(self.success_reward, bool)
            or not isinstance(self.success_reward, int | float)
            or not np.isfinite(self.success_reward)
        ):
            raise ConfigError(
                f"adapter.success_reward: expected a finite number, received {self.success_reward!r}"
            )
        if not isinstance(self.clip_actions, bool):
            raise ConfigError(f"adapter.clip_actions: expected true or false, received {self.clip_actions!r}")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1
        ):
            raise ConfigError(f"adapter.max_steps: expected a positive integer, received {self.max_steps!r}")

    @classmethod
    def from_dict(cls, raw: Any, source: str = "adapter") -> GymAdapter:
        """An adapter from a mapping (unknown keys are an error naming them)."""
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"{source}: expected a mapping of adapter fields, received {type(raw).__name__}"
            )
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown}; an adapter has {known}")
        return cls(**raw)

    @classmethod
    def from_file(cls, path: str | Path) -> GymAdapter:
        """An adapter from a YAML or JSON file."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"adapter: expected a YAML or JSON file, {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"adapter {path}: not valid YAML/JSON ({error})") from None
        return cls.from_dict({} if raw is None else raw, f"adapter {path}")

    def with_overrides(self, **changes: Any) -> GymAdapter:
        """A copy with the given fields replaced (None values are ignored), validated again."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lookup(observation: Any, key: str, role: str) -> Any:
    """``observation[key]``, or a nested value for ``"a/b"``; a missing key names the role and the keys."""
    if not isinstance(observation, Mapping):
        raise InputError(
            f"adapter.{role}: expected a dict observation with key {key!r}, received "
            f"{type(observation).__name__}"
        )
    if key in observation:
        return observation[key]
    value: Any = observation
    for part in key.split("/"):
        if not isinstance(value, Mapping) or part not in value:
            raise InputError(
                f"adapter.{role}: observation key {key!r} is missing; the observation has keys "
                f"{sorted(map(str, observation))}"
            )
        value = value[part]
    return value


class GymTask:
    """One gymnasium environment seen through a :class:`GymAdapter` (the protocol :func:`evaluate` runs).

    Args:
        env: a gymnasium-style environment with a bounded or unbounded ``Box`` action space.
        adapter: the declared mapping.
        success: a predicate replacing ``adapter.success_key`` / ``adapter.success_reward``.
    """

    def __init__(self, env: Any, adapter: GymAdapter, success: SuccessPredicate | None = None) -> None:
        for method in ("reset", "step"):
            if not callable(getattr(env, method, None)):
                raise ConfigError(
                    f"env: expected a gymnasium environment (reset, step, action_space), received "
                    f"{type(env).__name__} without {method}()"
                )
        space = getattr(env, "action_space", None)
        low, high = getattr(space, "low", None), getattr(space, "high", None)
        if low is None or high is None or np.ndim(low) != 1:
            raise ConfigError(
                f"env.action_space: expected a 1-D Box (continuous actions (A,)), received {space!r}"
            )
        if success is not None and not callable(success):
            raise ConfigError(
                f"success: expected a callable (observation, reward, info) -> bool, received {success!r}"
            )
        max_steps = adapter.max_steps
        if max_steps is None:
            spec = getattr(env, "spec", None)
            max_steps = getattr(spec, "max_episode_steps", None)
        if max_steps is None:
            raise ConfigError(
                "adapter.max_steps: the environment declares no step limit (spec.max_episode_steps); "
                "set max_steps in the adapter (--max-steps)"
            )
        self.env = env
        self.adapter = adapter
        self.max_steps = int(max_steps)
        self._success = success
        self._dtype = getattr(space, "dtype", np.float32)
        self.action_space = BoxSpace(
            np.asarray(low, np.float32), np.asarray(high, np.float32), tuple(f"a{i}" for i in range(len(low)))
        )
        self._steps = 0

    def reset(self, seed: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode with ``env.reset(seed=seed)``; returns the mapped observation and the info."""
        raw, info = self.env.reset(seed=seed)
        self._steps = 0
        return self.observation(raw), dict(info)

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """One step with an action ``(A,)`` (clipped when the adapter says so); ``info["success"]`` is the
        declared success, which also ends the episode."""
        array = np.asarray(action, dtype=np.float64)
        if array.shape != self.action_space.shape:
            raise InputError(
                f"action: expected shape {self.action_space.shape} (the environment's action space), "
                f"received {array.shape}"
            )
        if self.adapter.clip_actions:
            array = self.action_space.clip(array)
        raw, reward, terminated, truncated, info = self.env.step(array.astype(self._dtype))
        self._steps += 1
        success = self.succeeded(raw, float(reward), info)
        info = {**info, "success": success}
        terminated = bool(terminated) or success
        truncated = not terminated and (bool(truncated) or self._steps >= self.max_steps)
        return self.observation(raw), float(reward), terminated, truncated, info

    def succeeded(self, raw: Any, reward: float, info: Mapping[str, Any]) -> bool:
        """The declared success of one step (predicate, reward threshold or info key)."""
        if self._success is not None:
            return bool(self._success(raw, reward, info))
        if self.adapter.success_reward is not None:
            return reward >= self.adapter.success_reward
        key = self.adapter.success_key
        if key not in info:
            raise InputError(
                f"adapter.success_key: the environment's info has no {key!r} (received keys "
                f"{sorted(map(str, info))}); name the info key that reports success (--success-key), a "
                "reward threshold (--success-reward) or pass a success predicate"
            )
        return bool(np.asarray(info[key]).any())

    def observation(self, raw: Any) -> dict[str, Any]:
        """The raw observation in the policy's layout: ``observation.images.<camera>`` ``(3, H, W)``,
        ``observation.state`` float32 ``(S,)``, ``task`` (a string)."""
        adapter = self.adapter
        out: dict[str, Any] = {}
        for camera, key in adapter.cameras.items():
            image = np.asarray(_lookup(raw, key, "cameras"))
            expected = "(H, W, 3)" if adapter.image_layout == "HWC" else "(3, H, W)"
            channels = (
                image.shape[-1] if adapter.image_layout == "HWC" else image.shape[0] if image.ndim else 0
            )
            if image.ndim != 3 or channels != 3:
                raise InputError(
                    f"observation key {key!r} (camera {camera!r}): expected an RGB image {expected} "
                    f"(image_layout {adapter.image_layout}), received shape {image.shape}"
                )
            if adapter.image_layout == "HWC":
                image = image.transpose(2, 0, 1)
            if image.dtype != np.uint8:
                image = image.astype(np.float32)
            out[camera_key(camera)] = np.ascontiguousarray(image)
        if adapter.state is not None:
            state = np.asarray(_lookup(raw, adapter.state, "state"), dtype=np.float32).reshape(-1)
        else:
            state = np.zeros(0, dtype=np.float32)
        out[STATE_KEY] = state
        if adapter.instruction_key is not None:
            text = _lookup(raw, adapter.instruction_key, "instruction_key")
            if not isinstance(text, str):
                raise InputError(
                    f"adapter.instruction_key: observation key {adapter.instruction_key!r} holds "
                    f"{type(text).__name__}, expected the instruction string"
                )
        else:
            text = adapter.instruction or ""
        out[TASK_KEY] = text
        return out

    def probe(self, seed: int) -> dict[str, Any]:
        """Reset with ``seed`` and take one step at the middle of the action bounds (0 where unbounded),
        so that a missing key or success signal is reported before an evaluation starts; returns the
        mapped first observation. The evaluation resets the environment again."""
        observation, _ = self.reset(seed=seed)
        low, high = self.action_space.low, self.action_space.high
        bounded = np.isfinite(low) & np.isfinite(high)
        middle = np.where(bounded, (np.where(bounded, low, 0) + np.where(bounded, high, 0)) / 2, 0.0)
        self.step(np.clip(middle, low, high))
        return observation

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if callable(close):
            close()


def check_policy_fits(
    policy: Any, adapter: GymAdapter, observation: Mapping[str, Any], action_shape: tuple[int, ...]
) -> str:
    """Check a mapped observation and the action shape against an :class:`f1.model.F1Policy`; returns the
    embodiment name to use. Errors name the observation key, the expected and the received shape."""
    config = policy.config
    names = list(policy.model.embodiments.names)
    name = adapter.embodiment
    if name is None:
        if len(names) != 1:
            raise ConfigError(f"adapter.embodiment: the policy knows {names}; name the one this robot is")
        name = names[0]
    elif name not in names:
        raise ConfigError(f"adapter.embodiment: the policy knows {names}, received {name!r}")
    missing = [c for c in config.cameras if c not in adapter.cameras]
    if missing:
        raise ConfigError(
            f"adapter.cameras: the policy reads cameras {list(config.cameras)}, the adapter maps "
            f"{sorted(adapter.cameras)} (missing {missing})"
        )
    size = config.vision.image_size
    for camera in config.cameras:
        image = observation[camera_key(camera)]
        if tuple(image.shape) != (3, size, size):
            key = adapter.cameras[camera]
            expected = (size, size, 3) if adapter.image_layout == "HWC" else (3, size, size)
            received = (*image.shape[1:], 3) if adapter.image_layout == "HWC" else tuple(image.shape)
            raise InputError(
                f"observation key {key!r} (camera {camera!r}): expected {expected} ({adapter.image_layout}), "
                f"received {received}"
            )
    embodiment = policy.model.embodiments.get(name)
    state = observation[STATE_KEY]
    if state.shape != (embodiment.state_dim,):
        key = adapter.state if adapter.state is not None else "(no state key)"
        raise InputError(
            f"observation key {key!r} (state): expected ({embodiment.state_dim},) for embodiment {name!r}, "
            f"received {tuple(state.shape)}"
        )
    if tuple(action_shape) != (embodiment.action_dim,):
        raise InputError(
            f"env.action_space: embodiment {name!r} acts with ({embodiment.action_dim},), the environment "
            f"expects {tuple(action_shape)}"
        )
    return name


def load_env_factory(spec: str, kwargs: Mapping[str, Any] | None = None) -> Callable[[], Any]:
    """``"package.module:factory"`` -> a function that builds one environment, ``factory(**kwargs)``.

    The module is imported by name (the user's explicit choice on the command line); a missing module, a
    missing attribute or one that is not callable raise :class:`f1.errors.ConfigError` naming ``env``.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"env: expected 'module:factory' (e.g. my_sim.envs:make_env), received {spec!r}")
    module_name, attribute = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise ConfigError(f"env: no module named {module_name!r} (from {spec!r})") from None
        raise ConfigError(f"env: importing {module_name!r} failed: {error}") from None
    except Exception as error:  # the user's module raised while importing
        raise ConfigError(f"env: importing {module_name!r} failed: {type(error).__name__}: {error}") from None
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise ConfigError(f"env: module {module_name!r} has no attribute {attribute!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(
            f"env: {spec!r} is a {type(factory).__name__}, expected a callable that builds an env"
        )
    arguments = dict(kwargs or {})

    def build() -> Any:
        try:
            return factory(**arguments)
        except TypeError as error:  # the factory does not take these arguments (--env-arg)
            raise ConfigError(f"env: {spec}(**{arguments}) failed: {error}") from None

    return build


def parse_seeds(text: str, default_start: int) -> list[int]:
    """``"N"`` (N seeds from ``default_start``), ``"A:B"`` (``range(A, B)``) or ``"a,b,c"``."""
    try:
        if ":" in text:
            first, last = (int(p) for p in text.split(":"))
            seeds = list(range(first, last))
        elif "," in text:
            seeds = [int(p) for p in text.split(",")]
        else:
            seeds = list(range(default_start, default_start + int(text)))
    except ValueError:
        raise ConfigError(f"--seeds: expected N, A:B or a,b,c (integers), received {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds: expected at least one non-negative seed, received {text!r}")
    return seeds


def results_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of result rows (``policy``, ``episodes``, ``success_rate``, ``ci95``,
    ``mean_steps``): one row per policy, success in % with its 95% interval."""
    lines = ["| policy | episodes | success % [95% CI] | mean steps |", "|---|---:|---:|---:|"]
    for row in rows:
        lo, hi = row["ci95"]
        rate = f"{100 * row['success_rate']:.1f} [{100 * lo:.0f}, {100 * hi:.0f}]"
        lines.append(f"| {row['policy']} | {row['episodes']} | {rate} | {row['mean_steps']:.1f} |")
    return "\n".join(lines)
