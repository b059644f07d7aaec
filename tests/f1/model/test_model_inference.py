"""Inference: one seed for tokens and noise, cached == recomputed, runtime scales, LeRobot's action queue."""

from __future__ import annotations

import pytest
import torch

from f1.model import LATENCY_MODULES, Embodiment, InputError, UnknownEmbodimentError


@pytest.mark.parametrize("mode", ["f1", "no_gen", "history_no_foresight"])
def test_cached_inference_equals_recomputing_everything(tiny_policy, observation_factory, mode: str) -> None:
    policy = tiny_policy(mode)
    observation = observation_factory()
    cached = policy.plan(observation, seed=7, return_foresight=True)
    recomputed = policy.plan(observation, seed=7, return_foresight=True, use_cache=False)
    torch.testing.assert_close(cached.actions, recomputed.actions, rtol=1e-5, atol=1e-5)
    if mode == "f1":
        assert all(torch.equal(a, b) for a, b in zip(cached.foresight.indices, recomputed.foresight.indices))


def test_one_seed_repeats_tokens_and_actions_and_another_seed_changes_them(
    tiny_policy, observation_factory
) -> None:
    policy = tiny_policy("f1")
    observation = observation_factory()
    first = policy.plan(observation, seed=1, return_foresight=True)
    again = policy.plan(observation, seed=1, return_foresight=True)
    other = policy.plan(observation, seed=2, return_foresight=True)
    assert torch.equal(first.actions, again.actions)
    assert all(torch.equal(a, b) for a, b in zip(first.foresight.indices, again.foresight.indices))
    assert not torch.equal(first.actions, other.actions)
    assert any(not torch.equal(a, b) for a, b in zip(first.foresight.indices, other.foresight.indices))


def test_given_noise_replaces_the_generators_draw_and_is_validated(tiny_policy, observation_factory) -> None:
    policy = tiny_policy("no_gen")
    observation = observation_factory()
    noise = torch.randn(1, 8, 7, generator=torch.Generator().manual_seed(5))
    drawn = policy.plan(observation, generator=torch.Generator().manual_seed(5))
    given = policy.plan(observation, seed=123, noise=noise)  # the seed then draws nothing
    assert torch.equal(drawn.actions, given.actions)
    for bad, message in [
        (torch.randn(1, 8, 6), r"noise: expected a tensor of shape \(1, 8, 7\), received \(1, 8, 6\)"),
        (noise.numpy(), "received ndarray"),
        (torch.ones(1, 8, 7, dtype=torch.long), "floating-point tensor, received dtype torch.int64"),
        (torch.full((1, 8, 7), float("nan")), "finite values, received NaN or inf"),
    ]:
        with pytest.raises(InputError, match=message):
            policy.plan(observation, noise=bad)


@pytest.mark.parametrize("num_scales", [1, 2, 4])
def test_number_of_foresight_scales_is_a_runtime_argument(
    tiny_policy, observation_factory, num_scales
) -> None:
    plan = tiny_policy("f1").plan(observation_factory(), num_scales=num_scales, decode_foresight=True)
    assert [i.shape[1] for i in plan.foresight.indices] == [1, 4, 16, 64][:num_scales]
    image = plan.foresight.image
    assert image.shape == (1, 3, 64, 64)
    assert float(image.min()) >= 0.0
    assert float(image.max()) <= 1.0
    assert plan.actions.shape == (1, 8, 7)


def test_latency_is_one_total_by_default_and_a_breakdown_when_profiled(
    tiny_policy, observation_factory
) -> None:
    policy = tiny_policy("f1")
    assert set(policy.plan(observation_factory()).latency_ms) == {"total"}
    plan = policy.plan(observation_factory(), decode_foresight=True, profile=True)
    assert set(plan.latency_ms) == {*LATENCY_MODULES, "total"}
    assert all(ms >= 0 for ms in plan.latency_ms.values())
    assert plan.latency_ms["total"] == pytest.approx(
        sum(v for k, v in plan.latency_ms.items() if k != "total")
    )


def test_actions_are_unnormalized_with_the_embodiment_statistics(tiny_policy, observation_factory) -> None:
    policy = tiny_policy("no_gen", fresh=True)
    shifted = Embodiment(
        name="shifted",
        state_dim=8,
        action_dim=7,
        normalization="mean_std",
        state_stats={"mean": [0.0] * 8, "std": [1.0] * 8},
        action_stats={"mean": [100.0] * 7, "std": [1e-3] * 7},
    )
    policy.add_embodiment(shifted)
    adapter = policy.model.adapters["shifted"]
    adapter.load_state_dict(policy.model.adapters["sim_arm"].state_dict())
    observation = observation_factory()
    raw = policy.plan(observation, seed=0).actions
    scaled = policy.plan({**observation, "embodiment": "shifted"}, seed=0).actions
    torch.testing.assert_close(scaled, raw * (1e-3 + 1e-8) + 100.0)


def test_select_action_replans_every_n_action_steps_and_reset_repeats_the_episode(
    tiny_policy, observation_factory
) -> None:
    policy = tiny_policy("f1", fresh=True)
    calls = []
    sample = policy.model.sample
    policy.model.sample = lambda *a, **k: calls.append(1) or sample(*a, **k)  # type: ignore[method-assign]
    observation = {k: v[0] if isinstance(v, torch.Tensor) else v for k, v in observation_factory().items()}
    observation.pop("history")
    policy.reset(seed=5)
    first = [policy.select_action(observation) for _ in range(9)]
    assert len(calls) == 3  # n_action_steps = 4: plans at steps 0, 4 and 8
    assert first[0].shape == (7,)
    chunk = policy.last_plan.actions
    assert torch.equal(first[8], chunk[0, 0])
    policy.reset(seed=5)
    second = [policy.select_action(observation) for _ in range(9)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_the_history_window_pads_the_episode_start(tiny_policy, observation_factory) -> None:
    policy = tiny_policy("f1", fresh=True)
    observation = {k: v for k, v in observation_factory().items() if k != "history"}
    policy.reset()
    policy.select_action(observation)
    latents, valid = policy._history_window(list(policy._frames))
    assert latents.shape == (1, 2, 16, 8, 8)  # (B, T, Cz, h, w) of the tiny VQ-VAE
    assert valid.tolist() == [[False, True]]  # stride 2: the frame two steps back does not exist yet


def test_select_action_plans_what_plan_plans_from_the_same_history(tiny_policy, observation_factory) -> None:
    policy = tiny_policy("f1", fresh=True)
    episode = [observation_factory(seed) for seed in range(5)]
    policy.reset(seed=3)
    for observation in episode:
        policy.select_action({k: v for k, v in observation.items() if k != "history"})
    # the replan at step 4 saw frames 2 and 4 (offsets -2, 0): the same chunk from plan with that history
    history = torch.stack([episode[2]["observation.images.front"], episode[4]["observation.images.front"]], 1)
    generator = torch.Generator().manual_seed(3)
    policy.plan({**episode[0], "history": history}, generator=generator)  # the plan at step 0 drew first
    expected = policy.plan({**episode[4], "history": history}, generator=generator).actions
    torch.testing.assert_close(policy.last_plan.actions, expected, rtol=0, atol=1e-6)


def test_a_replan_encodes_only_the_frames_it_has_not_encoded_before(tiny_policy, observation_factory) -> None:
    policy = tiny_policy("f1", fresh=True)
    encoded = []
    encode = policy.model.generation.quantized_latents
    policy.model.generation.quantized_latents = lambda frames: encoded.append(len(frames)) or encode(frames)
    observation = {k: v for k, v in observation_factory().items() if k != "history"}
    policy.reset()
    for _ in range(9):  # plans at steps 0, 4, 8 over frames {0}, {2, 4}, {6, 8}
        policy.select_action(observation)
    assert encoded == [1, 2, 2]


def test_every_call_validates_the_observation_even_with_actions_queued(
    tiny_policy, observation_factory
) -> None:
    policy = tiny_policy("f1", fresh=True)
    observation = {k: v for k, v in observation_factory().items() if k != "history"}
    policy.reset()
    policy.select_action(observation)  # plans: 3 actions stay queued
    queued, frames = list(policy._action_queue), list(policy._frames)
    bad = [
        ({**observation, "observation.images.front": torch.rand(1, 3, 32, 32)}, r"expected \(B, 3, 64, 64\)"),
        ({**observation, "observation.state": torch.full((1, 8), float("nan"))}, "finite"),
        ({k: v for k, v in observation.items() if k != "task"}, "task: missing"),
        (
            {
                **{k: torch.cat([v, v]) for k, v in observation.items() if isinstance(v, torch.Tensor)},
                "task": "go",
            },
            "a batch of 2",
        ),
    ]
    for changed, message in bad:
        with pytest.raises(InputError, match=message):
            policy.select_action(changed)
        assert list(policy._action_queue) == queued
        assert list(policy._frames) == frames


def test_bad_observations_fail_before_any_state_changes(tiny_policy, observation_factory) -> None:
    policy = tiny_policy("f1", fresh=True)
    observation = {k: v for k, v in observation_factory().items() if k != "history"}
    policy.reset()
    with pytest.raises(UnknownEmbodimentError, match="ufo"):
        policy.select_action({**observation, "embodiment": "ufo"})
    assert len(policy._frames) == 0
    with pytest.raises(InputError, match=r"observation\.state: expected a tensor"):
        policy.select_action({**observation, "observation.state": [0.0] * 8})
    with pytest.raises(InputError, match="task: missing"):
        policy.select_action({k: v for k, v in observation.items() if k != "task"})
    assert len(policy._frames) == 0
    assert len(policy._action_queue) == 0
    with pytest.raises(InputError, match=r"num_scales: expected an int in \[1, 4\]"):
        policy.plan(observation_factory(), num_scales=0)
    policy.add_embodiment(Embodiment("other_arm", 8, 7))
    pair = {
        k: torch.cat([v, v]) if isinstance(v, torch.Tensor) else v for k, v in observation_factory().items()
    }
    mixed = {**pair, "task": "x", "embodiment": ["sim_arm", "other_arm"]}
    with pytest.raises(InputError, match="plan takes one embodiment per call"):
        policy.plan(mixed)


def test_bf16_precision_keeps_the_tokenizer_in_float32(
    tiny_policy, observation_factory, batch_factory
) -> None:
    policy = tiny_policy("f1", fresh=True)
    full = policy.plan(observation_factory(), seed=0).actions
    policy.model.to_precision(torch.bfloat16)
    assert policy.model.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in policy.model.generation.tokenizer.parameters())
    half = policy.plan(observation_factory(), seed=0, decode_foresight=True)
    assert half.actions.dtype == torch.float32
    assert torch.isfinite(half.actions).all()
    assert (half.actions - full).abs().max() < 0.5  # same model, bf16 rounding over 10 ODE steps
    assert torch.isfinite(policy.model(batch_factory(2))["flow"])
