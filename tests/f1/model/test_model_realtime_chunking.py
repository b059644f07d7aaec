"""Real-time chunking in F1: ``plan(previous_chunk=...)``, the ``action.rtc`` settings and the execution modes
of ``select_action`` (sync, naive async, RTC)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import torch

from f1.errors import ConfigError, InputError
from f1.model import F1Config, F1Policy, preset
from f1.model.config import RealTimeChunkingConfig
from f1.model.realtime_chunking import PreviousChunk


def _live(observation: dict[str, Any]) -> dict[str, Any]:
    """A control-loop observation: no history key (the policy keeps its own)."""
    return {k: v for k, v in observation.items() if k != "history"}


def _episode(policy: F1Policy, observations: list[dict[str, Any]], seed: int) -> list[torch.Tensor]:
    policy.reset(seed=seed)
    return [policy.select_action(_live(o)) for o in observations]


# --- plan(previous_chunk=...) -----------------------------------------------------------------------


def test_no_previous_chunk_is_the_plain_plan_bit_for_bit(tiny_policy, observation_factory) -> None:
    policy = tiny_policy("f1")
    observation = observation_factory()
    plain = policy.plan(observation, seed=4).actions
    assert torch.equal(policy.plan(observation, seed=4, previous_chunk=None).actions, plain)


def test_a_guidance_cap_of_zero_gives_the_plain_plan_bit_for_bit(tiny_policy, observation_factory) -> None:
    policy = tiny_policy("f1", **{"action.rtc.max_guidance": 0.0})
    observation = observation_factory()
    previous = policy.plan(observation_factory(1), seed=9).actions[:, 2:]
    plain = policy.plan(observation, seed=4).actions
    assert torch.equal(
        policy.plan(observation, seed=4, previous_chunk=previous, inference_delay=2).actions, plain
    )


@pytest.mark.parametrize("mode", ["f1", "no_gen"])
def test_the_frozen_steps_of_a_guided_plan_follow_the_previous_chunk(
    tiny_policy, observation_factory, mode: str
) -> None:
    policy = tiny_policy(mode)
    observation = observation_factory()
    previous = policy.plan(observation_factory(1), seed=9).actions[:, 2:]  # (1, 6, 7) raw
    guided_distance, plain_distance = 0.0, 0.0
    for seed in range(4):
        plain = policy.plan(observation, seed=seed).actions
        guided = policy.plan(observation, seed=seed, previous_chunk=previous, inference_delay=2).actions
        guided_distance += float((guided[:, :2] - previous[:, :2]).norm())
        plain_distance += float((plain[:, :2] - previous[:, :2]).norm())
    assert guided_distance < 0.1 * plain_distance


def test_a_guided_plan_agrees_with_and_without_the_cache(tiny_policy, observation_factory) -> None:
    # the cache is filled without grad and the guided steps differentiate only the action tokens
    policy = tiny_policy("f1")
    observation = observation_factory()
    previous = policy.plan(observation_factory(1), seed=9).actions[0, 3:]  # (5, 7): shared by the batch
    cached = policy.plan(observation, seed=2, previous_chunk=previous, inference_delay=1)
    recomputed = policy.plan(observation, seed=2, previous_chunk=previous, inference_delay=1, use_cache=False)
    torch.testing.assert_close(cached.actions, recomputed.actions, rtol=1e-5, atol=1e-5)
    assert not cached.actions.requires_grad


def test_the_guidance_target_is_normalized_padded_and_weighted_to_the_previous_chunks_end(tiny_model) -> None:
    model = tiny_model("f1")
    embodiment = model.embodiments.get("sim_arm")
    previous = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    guidance = PreviousChunk(previous, 2).guidance(
        embodiment, model.config.action, batch=2, device=model.device
    )
    assert guidance.target.shape == (2, 8, 7)
    torch.testing.assert_close(guidance.target[:, :5], embodiment.normalize_action(previous))
    assert bool((guidance.target[:, 5:] == 0).all())
    weights = guidance.weights()
    assert weights[:2].tolist() == [1.0, 1.0]
    assert bool((weights[2:5] > 0).all())
    assert weights[5:].tolist() == [0.0, 0.0, 0.0]
    assert guidance.max_guidance == 5.0
    assert guidance.schedule == "exp"


@pytest.mark.parametrize(
    ("previous", "delay", "message"),
    [
        (torch.zeros(1, 4, 6), 1, r"previous_chunk: expected shape \(1, H', 7\) or \(H', 7\) with H' <= 8"),
        (torch.zeros(1, 9, 7), 1, r"with H' <= 8, received \(1, 9, 7\)"),
        (torch.zeros(2, 4, 7), 1, r"expected shape \(1, H', 7\)"),
        (torch.zeros(1, 0, 7), 0, "H' >= 1"),
        (torch.zeros(7), 0, r"\(B, H', A\) or \(H', A\)"),
        (torch.zeros(1, 4, 7, dtype=torch.int64), 1, "floating-point tensor, received dtype torch.int64"),
        (torch.full((1, 4, 7), float("nan")), 1, "previous_chunk: expected finite values"),
        ([[0.0] * 7], 0, "received list"),
        (torch.zeros(1, 4, 7), -1, r"inference_delay: expected an int >= 0, received -1"),
        (torch.zeros(1, 4, 7), True, "inference_delay: expected an int >= 0, received True"),
        (torch.zeros(1, 4, 7), 5, "at most the previous chunk's 4 steps"),
        (torch.zeros(1, 8, 7), 8, "expected less than the chunk's 8 steps"),
        (None, 2, "inference_delay: expected 0 without a previous_chunk, received 2"),
    ],
)
def test_a_bad_previous_chunk_or_delay_raises_naming_it(
    tiny_policy, observation_factory, previous: Any, delay: Any, message: str
) -> None:
    policy = tiny_policy("f1")
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    with pytest.raises(InputError, match=message):
        policy.plan(
            observation_factory(), generator=generator, previous_chunk=previous, inference_delay=delay
        )
    assert torch.equal(generator.get_state(), before)


# --- the action.rtc settings -------------------------------------------------------------------------


def test_a_config_saved_before_the_rtc_section_loads_with_its_defaults() -> None:
    config = preset("tiny")
    data = json.loads(config.to_json())
    del data["action"]["rtc"]
    loaded = F1Config.from_dict(data)
    assert loaded.action.rtc == RealTimeChunkingConfig()
    assert loaded == config


def test_the_rtc_section_round_trips_and_takes_dotted_overrides() -> None:
    config = preset("tiny").with_overrides(
        {"action.rtc.schedule": "linear", "action.rtc.execution_horizon": 3}
    )
    assert config.action.rtc == RealTimeChunkingConfig(execution_horizon=3, schedule="linear")
    assert F1Config.from_json(config.to_json()) == config
    assert F1Config.from_yaml(config.to_yaml()) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"action.rtc.schedule": "cosine"}, r"action\.rtc\.schedule: expected one of \['exp', 'linear', "),
        ({"action.rtc.max_guidance": -1.0}, r"action\.rtc\.max_guidance: expected a number >= 0.0"),
        ({"action.rtc.max_guidance": float("nan")}, r"action\.rtc\.max_guidance: expected a finite number"),
        (
            {"action.rtc.execution_horizon": -1},
            r"action\.rtc\.execution_horizon: expected an int >= 0 or None",
        ),
        ({"action.rtc.execution_horizon": 8}, r"expected at most chunk_size - 1 = 7"),
        ({"action.rtc.beta": 1.0}, r"unknown keys \['beta'\]"),
    ],
)
def test_bad_rtc_settings_raise_naming_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        preset("tiny").with_overrides(overrides)


# --- select_action: sync, async, rtc ------------------------------------------------------------------


def _record_plans(policy: F1Policy) -> list[dict[str, Any]]:
    """Every ``model.sample`` call: the call number of ``select_action`` it ran in and its guidance."""
    calls: list[dict[str, Any]] = []
    sample = policy.model.sample

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append({"guidance": kwargs.get("guidance")})
        return sample(*args, **kwargs)

    policy.model.sample = recording  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("mode", ["async", "rtc"])
@pytest.mark.parametrize(("delay", "horizon"), [(1, 4), (2, 4), (2, 2), (4, 4)])
def test_the_next_chunk_starts_with_d_actions_queued_and_takes_over_after_exactly_d_calls(
    tiny_policy, observation_factory, mode: str, delay: int, horizon: int
) -> None:
    policy = tiny_policy("f1", fresh=True)
    policy.set_execution(mode, inference_delay=delay, execution_horizon=horizon)
    calls = _record_plans(policy)
    observations = [observation_factory(seed) for seed in range(14)]
    policy.reset(seed=3)
    started, switched, chunks, actions = [], [], [], []
    for step, observation in enumerate(observations):
        before, before_plan = len(calls), policy.last_plan
        actions.append(policy.select_action(_live(observation)))
        started += [step] * (len(calls) - before)
        if policy.last_plan is not before_plan:
            switched.append(step)
            chunks.append(policy.last_plan)
    # the first chunk at step 0 (executed from its step 0); every later one starts when d actions are left
    first_start = horizon - delay
    assert started == [0, *range(first_start, len(observations), horizon)]
    assert switched == [0, *(s + delay for s in started[1:] if s + delay < len(observations))]
    # each chunk executes its steps [start, start + s) until the next takes over: the first from 0, the
    # others from d
    ends = [*switched[1:], len(actions)]
    for i, (chunk, begin, end) in enumerate(zip(chunks, switched, ends)):
        offset = 0 if i == 0 else delay
        assert end - begin == horizon or end == len(actions)
        for step in range(begin, end):
            assert torch.equal(actions[step], chunk.actions[:, offset + step - begin])
    guidances = [c["guidance"] for c in calls]
    assert guidances[0] is None
    if mode == "async":
        assert all(g is None for g in guidances)
    else:
        assert all(isinstance(g, PreviousChunk) and g.inference_delay == delay for g in guidances[1:])
        # the chunk executing when the inference starts, from its d last queued actions on
        assert torch.equal(guidances[1].actions, chunks[0].actions[:, horizon - delay :])
        if len(guidances) > 2:
            assert torch.equal(guidances[2].actions, chunks[1].actions[:, horizon:])


def test_after_an_rtc_switch_the_robot_does_what_the_old_chunk_planned_more_closely_than_naive_async(
    tiny_policy, observation_factory
) -> None:
    # A random tiny model's chunks are noise from step to step, so the measure is the distance between
    # what the new chunk executes first and what the old chunk had planned for that step.
    observations = [observation_factory(seed) for seed in range(13)]
    distances = {}
    for mode in ("async", "rtc"):
        policy = tiny_policy("f1")
        policy.set_execution(mode, inference_delay=2, execution_horizon=4)
        policy.reset(seed=1)
        distance, old = 0.0, None
        for step, observation in enumerate(observations):
            action = policy.select_action(_live(observation))
            if step in (4, 8, 12):  # chunks take over here (their inference started 2 steps earlier)
                distance += float((action - old.actions[:, 4]).norm())
            old = policy.last_plan
        distances[mode] = distance
    assert distances["rtc"] < 0.5 * distances["async"]


@pytest.mark.parametrize("mode", ["async", "rtc"])
def test_an_asynchronous_episode_repeats_for_a_seed_and_in_the_background(
    tiny_policy, observation_factory, mode: str
) -> None:
    observations = [observation_factory(seed) for seed in range(11)]
    policy = tiny_policy("f1", fresh=True)
    policy.set_execution(mode, inference_delay=2, execution_horizon=3)
    first = _episode(policy, observations, seed=5)
    again = _episode(policy, observations, seed=5)
    policy.set_execution(mode, inference_delay=2, execution_horizon=3, background=True)
    background = _episode(policy, observations, seed=5)
    other = _episode(policy, observations, seed=6)
    policy.set_execution()  # back to sync; the worker thread is shut down
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(torch.equal(a, b) for a, b in zip(first, background))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_delay_zero_is_synchronous_execution(tiny_policy, observation_factory) -> None:
    observations = [observation_factory(seed) for seed in range(9)]
    policy = tiny_policy("f1")
    sync = _episode(policy, observations, seed=2)
    policy.set_execution("async", inference_delay=0)
    assert all(torch.equal(a, b) for a, b in zip(sync, _episode(policy, observations, seed=2)))
    policy.set_execution()


def test_the_default_execution_is_synchronous_and_unchanged(tiny_policy) -> None:
    policy = tiny_policy("f1")
    assert policy.execution.mode == "sync"
    assert policy.execution.inference_delay == 0
    assert policy.execution.background is False


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"mode": "temporal_ensemble"}, r"mode: expected one of \['sync', 'async', 'rtc'\]"),
        ({"mode": "sync", "inference_delay": 1}, "mode 'sync' plans when the queue is empty"),
        ({"mode": "rtc", "inference_delay": -1}, "inference_delay: expected an int >= 0"),
        ({"mode": "rtc", "inference_delay": 1.0}, "inference_delay: expected an int >= 0"),
        ({"mode": "rtc", "inference_delay": 5}, r"expected at most min\(execution_horizon, chunk_size"),
        ({"mode": "rtc", "inference_delay": 3, "execution_horizon": 2}, r"= 2 \(one inference at a time"),
        ({"mode": "rtc", "inference_delay": 2, "execution_horizon": 7}, r"= 1 \(one inference at a time"),
        ({"mode": "async", "execution_horizon": 0}, r"execution_horizon: expected an int in \[1, 8\]"),
        ({"mode": "async", "execution_horizon": 9}, r"execution_horizon: expected an int in \[1, 8\]"),
        ({"mode": "async", "background": 1}, "background: expected a bool"),
    ],
)
def test_bad_execution_settings_raise_naming_the_argument_and_change_nothing(
    tiny_policy, arguments: dict[str, Any], message: str
) -> None:
    policy = tiny_policy("f1")
    policy.set_execution("rtc", inference_delay=1)
    with pytest.raises(InputError, match=message):
        policy.set_execution(**arguments)
    assert policy.execution.mode == "rtc"
    assert policy.execution.inference_delay == 1
    policy.set_execution()


def test_a_bad_observation_during_an_inference_leaves_the_queue_history_and_next_chunk_unchanged(
    tiny_policy, observation_factory
) -> None:
    policy = tiny_policy("f1", fresh=True)
    policy.set_execution("rtc", inference_delay=2, execution_horizon=4)
    observation = _live(observation_factory())
    policy.reset(seed=0)
    for _ in range(3):  # the next chunk's inference started at step 2
        policy.select_action(observation)
    queued, frames, pending = list(policy._action_queue), list(policy._frames), policy._next_chunk
    assert pending is not None
    for changed, message in [
        ({**observation, "observation.state": torch.full((1, 8), float("nan"))}, "finite"),
        ({k: v for k, v in observation.items() if k != "task"}, "task: missing"),
    ]:
        with pytest.raises(InputError, match=message):
            policy.select_action(changed)
        assert list(policy._action_queue) == queued
        assert list(policy._frames) == frames
        assert policy._next_chunk is pending


def test_a_failed_inference_raises_at_the_switch_and_the_next_call_plans_again(
    tiny_policy, observation_factory
) -> None:
    policy = tiny_policy("f1", fresh=True)
    policy.set_execution("rtc", inference_delay=1, execution_horizon=2, background=True)
    observation = _live(observation_factory())
    policy.reset(seed=0)
    sample, calls = policy.model.sample, []

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # the second chunk's inference, on the worker thread
            raise RuntimeError("device lost")
        return sample(*args, **kwargs)

    policy.model.sample = failing_once  # type: ignore[method-assign]
    policy.select_action(observation)  # the first chunk; the next one's inference starts at step 1
    policy.select_action(observation)
    frames = list(policy._frames)
    with pytest.raises(RuntimeError, match="device lost"):
        policy.select_action(observation)
    assert list(policy._frames) == frames
    assert len(policy._action_queue) == 0
    action = policy.select_action(observation)  # plans now (nothing executes meanwhile) and goes on
    assert torch.equal(action, policy.last_plan.actions[:, 0])
    policy.set_execution()


def test_in_the_background_the_calls_during_an_inference_return_before_it_finishes(
    tiny_policy, observation_factory
) -> None:
    policy = tiny_policy("f1", fresh=True)
    policy.set_execution("rtc", inference_delay=2, execution_horizon=3, background=True)
    observation = _live(observation_factory())
    sample, release, calls = policy.model.sample, threading.Event(), []

    def gated(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.current_thread().name)
        if len(calls) == 2:  # the second chunk's inference waits until the loop has gone on
            assert release.wait(timeout=60)
        return sample(*args, **kwargs)

    policy.model.sample = gated  # type: ignore[method-assign]
    policy.reset(seed=0)
    first = policy.select_action(observation)  # plans the first chunk; 3 queued
    policy.select_action(observation)  # 2 left: the next inference starts on the worker
    policy.select_action(observation)  # returns while that inference is held
    assert not release.is_set()
    release.set()
    after = policy.select_action(observation)  # the switch: waits for the inference, takes its step 2
    assert calls[1].startswith("f1-policy-inference")
    assert torch.equal(after, policy.last_plan.actions[:, 2])
    assert not torch.equal(first, after)
    policy.set_execution()
