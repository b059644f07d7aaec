"""Every public entry of f1 refuses bad input with an error naming the argument, before any state changes.

Each case is one bad input to one entry: the error class is asserted, the message must name the argument
(or file, or key), and where the entry has state (a policy's action queue and history, a file on disk) it
must be unchanged afterwards. The command line turns every user error into exit status 2 and one line.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from f1.cli import main
from f1.errors import CheckpointError, ConfigError, InputError, UnknownEmbodimentError
from f1.model import Embodiment, F1Config, F1Model, F1Policy, preset
from f1.model.checkpoint import config_of

NAN = float("nan")


@pytest.fixture(scope="module")
def policy() -> F1Policy:
    torch.manual_seed(0)
    return F1Policy(preset("tiny")).eval()


def observation(**changes: Any) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    obs: dict[str, Any] = {
        "observation.images.front": torch.rand(1, 3, 64, 64, generator=g),
        "observation.state": torch.zeros(1, 8),
        "task": "put the cube in the bowl",
        "history": torch.rand(1, 2, 3, 64, 64, generator=g),
    }
    obs.update(changes)
    return {k: v for k, v in obs.items() if v is not _DROP}


_DROP = object()

# (what is wrong, the observation, the error class, a regex the message must match)
PLAN_CASES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    (
        "missing camera",
        observation(**{"observation.images.front": _DROP}),
        InputError,
        "observation.images.front: missing",
    ),
    (
        "image size",
        observation(**{"observation.images.front": torch.rand(1, 3, 32, 32)}),
        InputError,
        r"observation.images.front: expected \(B, 3, 64, 64\)",
    ),
    (
        "numpy image",
        observation(**{"observation.images.front": np.zeros((1, 3, 64, 64), np.float32)}),
        InputError,
        "observation.images.front: expected a tensor",
    ),
    (
        "image range",
        observation(**{"observation.images.front": torch.full((1, 3, 64, 64), 2.0)}),
        InputError,
        r"observation.images.front: expected float images in \[0, 1\]",
    ),
    (
        "NaN image",
        observation(**{"observation.images.front": torch.full((1, 3, 64, 64), NAN)}),
        InputError,
        "observation.images.front: expected float images",
    ),
    (
        "int64 image",
        observation(**{"observation.images.front": torch.zeros(1, 3, 64, 64, dtype=torch.long)}),
        InputError,
        "observation.images.front: expected uint8 or float",
    ),
    ("missing state", observation(**{"observation.state": _DROP}), InputError, "observation.state: missing"),
    (
        "state width",
        observation(**{"observation.state": torch.zeros(1, 7)}),
        InputError,
        "observation.state: expected last dimension 8",
    ),
    (
        "state rank",
        observation(**{"observation.state": torch.zeros(8)}),
        InputError,
        r"observation.state: expected \(B, S\)",
    ),
    (
        "NaN state",
        observation(**{"observation.state": torch.full((1, 8), NAN)}),
        InputError,
        "observation.state: expected finite",
    ),
    (
        "inf state",
        observation(**{"observation.state": torch.full((1, 8), float("inf"))}),
        InputError,
        "observation.state: expected finite",
    ),
    (
        "state batch",
        observation(**{"observation.state": torch.zeros(2, 8)}),
        InputError,
        "observation.state: expected batch size 1",
    ),
    ("missing task", observation(task=_DROP), InputError, "task: missing"),
    ("task None", observation(task=None), InputError, "task: expected a str or a list"),
    ("task count", observation(task=["a", "b"]), InputError, "task: expected 1 instruction strings"),
    ("unknown embodiment", observation(embodiment="ufo"), UnknownEmbodimentError, "unknown embodiment 'ufo'"),
    ("embodiment type", observation(embodiment=3), InputError, "embodiment: expected a str or a list"),
    ("missing history", observation(history=_DROP), InputError, "history: missing"),
    (
        "history frames",
        observation(history=torch.rand(1, 3, 3, 64, 64)),
        InputError,
        "history: expected 1 to 2 frames",
    ),
    (
        "history rank",
        observation(history=torch.rand(1, 3, 64, 64)),
        InputError,
        r"history: expected \(B, T, 3, H, W\)",
    ),
    (
        "NaN history",
        observation(history=torch.full((1, 2, 3, 64, 64), NAN)),
        InputError,
        "history: expected float images",
    ),
    (
        "history pad dtype",
        observation(history_is_pad=torch.zeros(1, 2)),
        InputError,
        "history_is_pad: expected bool",
    ),
    (
        "history all padding",
        observation(history_is_pad=torch.ones(1, 2, dtype=torch.bool)),
        InputError,
        "history_is_pad: every sample needs",
    ),
    (
        "near-miss key",
        observation(history_is_padd=torch.zeros(1, 2, dtype=torch.bool)),
        InputError,
        "history_is_padd: unknown key .*did you mean 'history_is_pad'",
    ),
    ("not a mapping", [1, 2], InputError, "batch: expected a mapping"),  # type: ignore[list-item]
]

PLAN_ARGUMENT_CASES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("generator type", {"generator": "abc"}, InputError, "generator: expected a torch.Generator"),
    ("seed type", {"seed": "1"}, InputError, "seed: expected an int"),
    ("no scales", {"num_scales": 0}, InputError, r"num_scales: expected an int in \[1, 4\]"),
    ("too many scales", {"num_scales": 9}, InputError, r"num_scales: expected an int in \[1, 4\]"),
    (
        "noise shape",
        {"noise": torch.zeros(1, 8, 6)},
        InputError,
        r"noise: expected a tensor of shape \(1, 8, 7\)",
    ),
    ("NaN noise", {"noise": torch.full((1, 8, 7), NAN)}, InputError, "noise: expected finite values"),
    (
        "integer noise",
        {"noise": torch.zeros(1, 8, 7, dtype=torch.long)},
        InputError,
        "noise: expected a floating-point",
    ),
]


@pytest.mark.parametrize(("case", "obs", "error", "message"), PLAN_CASES, ids=[c[0] for c in PLAN_CASES])
def test_plan_and_select_action_refuse_bad_observations_and_keep_their_state(
    policy: F1Policy, case: str, obs: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        policy.plan(obs)
    policy.reset(seed=0)
    good = {k: v for k, v in observation().items() if k != "history"}
    policy.select_action(good)  # 3 actions queued, one frame kept
    queue, frames = [a.clone() for a in policy._action_queue], list(policy._frames)
    if case in (
        "state rank",
        "missing history",
        "history frames",
        "history rank",
        "NaN history",
        "history pad dtype",
        "history all padding",
        "not a mapping",
    ):
        return  # select_action keeps its own history; these keys are plan's
    with pytest.raises(error, match=message):
        policy.select_action(
            {k: v for k, v in obs.items() if k != "history"} if isinstance(obs, dict) else obs
        )
    assert [torch.equal(a, b) for a, b in zip(queue, policy._action_queue)] == [True] * len(queue)
    assert list(policy._frames) == frames


@pytest.mark.parametrize(
    ("case", "kwargs", "error", "message"), PLAN_ARGUMENT_CASES, ids=[c[0] for c in PLAN_ARGUMENT_CASES]
)
def test_plan_refuses_bad_arguments(
    policy: F1Policy, case: str, kwargs: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        policy.plan(observation(), **kwargs)


def batch(**changes: Any) -> dict[str, Any]:
    out = {
        **observation(),
        "action": torch.randn(2, 8, 7),
        "future_image": torch.rand(2, 3, 64, 64),
        "observation.images.front": torch.rand(2, 3, 64, 64),
        "observation.state": torch.zeros(2, 8),
        "task": "go",
        "history": torch.rand(2, 2, 3, 64, 64),
    }
    out.update(changes)
    return {k: v for k, v in out.items() if v is not _DROP}


TRAINING_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing action", batch(action=_DROP), "action: missing"),
    ("chunk length", batch(action=torch.randn(2, 5, 7)), r"action: expected \(B, 8, A\)"),
    ("action width", batch(action=torch.randn(2, 8, 6)), "action: expected last dimension 7"),
    ("NaN action", batch(action=torch.full((2, 8, 7), NAN)), "action: expected finite"),
    ("pad dtype", batch(action_is_pad=torch.zeros(2, 8)), "action_is_pad: expected bool"),
    (
        "all padding",
        batch(action_is_pad=torch.ones(2, 8, dtype=torch.bool)),
        "action_is_pad: every chunk step",
    ),
    ("missing future", batch(future_image=_DROP), "future_image: missing"),
    ("future rank", batch(future_image=torch.rand(2, 64, 64)), r"future_image: expected \(B, 3, H, W\)"),
]


@pytest.mark.parametrize(("case", "data", "message"), TRAINING_CASES, ids=[c[0] for c in TRAINING_CASES])
def test_the_training_pass_refuses_bad_batches(policy: F1Policy, case: str, data: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        policy.model(data)


CONFIG_CASES: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("unknown preset", lambda: preset("huge"), ConfigError, "preset: unknown preset 'huge'"),
    (
        "override key",
        lambda: preset("tiny", trunkk={"n_layers": 2}),
        ConfigError,
        r"overrides: unknown keys \['trunkk'\]",
    ),
    (
        "nested key",
        lambda: preset("tiny").with_overrides({"action.chunk": 3}),
        ConfigError,
        r"overrides.action: unknown keys \['chunk'\]",
    ),
    (
        "negative size",
        lambda: preset("tiny").with_overrides({"trunk.n_layers": -1}),
        ConfigError,
        "trunk.n_layers: expected a positive int",
    ),
    (
        "bool size",
        lambda: preset("tiny").with_overrides({"action.chunk_size": True}),
        ConfigError,
        "action.chunk_size: expected a positive int",
    ),
    ("mode", lambda: preset("tiny", mode="no_foresight"), ConfigError, "mode: expected one of"),
    (
        "solver",
        lambda: preset("tiny").with_overrides({"action.solver": "leapfrog"}),
        ConfigError,
        "action.solver: expected one of",
    ),
    (
        "overrides type",
        lambda: preset("tiny").with_overrides([1]),
        ConfigError,
        "overrides: expected a mapping",
    ),  # type: ignore[arg-type]
    ("from_dict key", lambda: F1Config.from_dict({"colour": 1}), ConfigError, r"unknown keys \['colour'\]"),
    ("no embodiment", lambda: F1Config(), ConfigError, "embodiments: expected at least one"),
    ("YAML text", lambda: F1Config.from_yaml("trunk: [unclosed"), ConfigError, "config: not valid YAML"),
    ("JSON text", lambda: F1Config.from_json("{"), ConfigError, "config: not valid JSON"),
    ("embodiment name", lambda: Embodiment("a b", 2, 2), ConfigError, "Embodiment.name"),
    (
        "stats width",
        lambda: Embodiment("a", 2, 2, normalization="mean_std", state_stats={"mean": [0], "std": [1]}),
        ConfigError,
        r"state_stats.mean: expected 2 numbers",
    ),
    (
        "quantile stats",
        lambda: Embodiment("a", 1, 1, normalization="quantile"),
        ConfigError,
        r"needs statistics \['q01', 'q99'\]",
    ),
    ("model config type", lambda: F1Model({"mode": "f1"}), ConfigError, "config: expected an F1Config"),  # type: ignore[arg-type]
    ("policy model type", lambda: F1Policy("tiny"), ConfigError, "model: expected an F1Model or an F1Config"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("case", "build", "error", "message"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES]
)
def test_configs_refuse_bad_values_naming_the_field(
    case: str, build: Callable, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        build()


def _files(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    good = root / "good"
    F1Policy(preset("tiny", mode="no_gen")).save(good)
    truncated = root / "truncated.safetensors"
    truncated.write_bytes((good / "model.safetensors").read_bytes()[:1000])
    foreign = root / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    text = root / "text.safetensors"
    text.write_text("not a checkpoint")
    pickled = root / "model.pt"
    pickled.write_bytes(pickle.dumps({"w": 1}))
    training = root / "training.safetensors"
    save_file({"w": torch.zeros(2)}, str(training), metadata={"format": "f1.train.checkpoint"})
    return {
        "truncated": truncated,
        "foreign": foreign,
        "text": text,
        "pickled": pickled,
        "training": training,
        "missing": root / "nowhere",
    }


FILE_CASES = {
    "truncated": "is not a readable safetensors file",
    "foreign": "is not an f1 policy checkpoint .*f1 convert",
    "text": "is not a readable safetensors file",
    "pickled": r"expected a \.safetensors file",
    "training": "is a checkpoint of f1 train: make a policy folder of it with `f1 export ",
    "missing": "is missing",
}


@pytest.mark.parametrize("kind", list(FILE_CASES))
@pytest.mark.parametrize("reader", ["F1Policy.load", "config_of"])
def test_policy_files_that_are_not_policies_are_named_and_never_unpickled(
    tmp_path: Path, kind: str, reader: str
) -> None:
    path = _files(tmp_path)[kind]
    read = F1Policy.load if reader == "F1Policy.load" else config_of
    with pytest.raises(CheckpointError, match=FILE_CASES[kind]) as error:
        read(path)
    assert path.name in str(error.value)


CLI_CASES: list[tuple[list[str], str]] = [
    (["demo", "--seed", "-1"], "--seed must be >= 0"),
    (["demo", "--threads", "0"], "--threads must be >= 1"),
    (["demo", "--workers", "0"], "--workers must be >= 1"),
    (["demo", "--train-minutes", "inf"], "--train-minutes must be a finite number > 0"),
    (["demo", "--train-minutes", "0"], "--train-minutes must be a finite number > 0"),
    (
        ["eval", "--policy", "random", "--embodiment", "gripper", "--variant", "static", "--episodes", "0"],
        "--episodes must be >= 1",
    ),
    (
        [
            "eval",
            "--policy",
            "random",
            "--embodiment",
            "gripper",
            "--variant",
            "static",
            "--episodes",
            "200000",
        ],
        "--episodes must be at most",
    ),
    (
        ["eval", "--policy", "{tmp}/nowhere", "--embodiment", "gripper", "--variant", "static"],
        "does not exist",
    ),
    (
        ["eval", "--policy", "random", "--embodiment", "gripper", "--variant", "static", "--out", "{tmp}"],
        "is a directory",
    ),
    (["bench", "--threads", "0", "--out", "{tmp}/b.json"], "--threads: expected a positive count"),
    (["bench", "--repeats", "0", "--out", "{tmp}/b.json"], "--repeats: expected a positive count"),
    (["bench", "--out", "{tmp}"], "--out: .* is a directory"),
    (["bench", "--presets", "huge", "--out", "{tmp}/b.json"], "--presets: unknown"),
    (["bench", "--policy", "{tmp}/nowhere", "--out", "{tmp}/b.json"], "--policy: .*is missing"),
    (["convert", "{tmp}/nowhere.safetensors", "{tmp}/out", "--from", "pi0"], "no such file"),
    (["train", "--stage", "3"], "--config RUN.yaml is required"),
]


@pytest.mark.parametrize(("argv", "message"), CLI_CASES, ids=[" ".join(c[0][:3]) for c in CLI_CASES])
def test_command_line_user_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    before = sorted(tmp_path.rglob("*"))
    try:
        code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert "Traceback" not in error
    assert re.search(message, error), error
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
