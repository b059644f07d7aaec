"""The complete foresight (``fut``), a given foresight, cached frame codes, several noise draws."""

from __future__ import annotations

import pytest
import torch

from f1.errors import ConfigError, InputError
from f1.model import F1Model, F1Policy, GenerationConfig, preset
from f1.model.uga import uga_spec

COMPLETE = {"generation": {"complete_foresight": True}}


def _batch(batch_factory, size=3, seed=0):
    return batch_factory(size, seed)


def _model(**overrides) -> F1Model:
    torch.manual_seed(0)
    return F1Model(preset("tiny", **overrides))


def test_the_fut_segment_is_read_by_the_action_expert_and_by_nothing_upstream():
    spec = uga_spec(
        "f1", und_length=8, chunk_size=4, history_length=4, scale_tokens=(1, 4), foresight_length=4
    )
    names = [s.name for s in spec.segments]
    assert names == ["und", "hist", "gen", "fut", "act"]
    assert "fut" in spec.sees["act"]
    assert set(spec.sees["fut"]) == {"und", "hist", "gen"}
    assert all("fut" not in spec.sees.get(name, ()) for name in ("und", "hist", "gen"))
    with pytest.raises(ConfigError, match="foresight_length"):
        uga_spec("no_gen", und_length=8, chunk_size=4, foresight_length=4)


def test_the_action_reads_the_complete_foresight_and_learns_from_it(batch_factory):
    model = _model(**COMPLETE).train()
    batch = _batch(batch_factory)
    torch.manual_seed(1)
    losses = model(batch)
    sum(losses.values()).backward()
    assert model.generation.foresight.proj.weight.grad.abs().sum() > 0
    # another future changes the action segment's hidden states but not the generation segment's
    other = dict(batch, future_image=torch.rand_like(batch["future_image"]))
    torch.manual_seed(2)
    first = model.segment_outputs(batch)
    torch.manual_seed(2)
    second = model.segment_outputs(other)
    assert not torch.allclose(first["act"], second["act"])
    assert not torch.allclose(first["fut"], second["fut"])
    assert "fut" not in _model().eval().segment_outputs(batch)  # off by default, as published


def test_sampled_foresight_feeds_the_models_own_most_likely_tokens(batch_factory):
    model = _model(generation={"complete_foresight": True, "sampled_foresight": 1.0}).eval()
    batch = _batch(batch_factory)
    inputs = model.parse(batch, need_actions=True, need_future=True)
    generation = model.generation
    targets = generation.target_indices(inputs.future)
    segments, valid = model._upstream_segments(inputs)
    segments["gen"] = generation.teacher_forced_tokens(targets, 4)
    spec = model.attention_spec(4)
    predicted = model._predicted_foresight(segments, valid, spec, 4)
    # the same thing by hand: one pass with every segment, the argmax of every gen token
    full = dict(segments)
    full["fut"] = torch.zeros(3, 64, 64)
    full["act"] = torch.zeros(3, 9, 64)
    logits = generation.logits(model.trunk(full, spec, valid)["gen"])
    tokens = logits.argmax(-1).split(list(generation.scale_tokens(4)), 1)
    torch.testing.assert_close(predicted, generation.indices_to_fhat(list(tokens)))
    # with every sample predicted, training's fut tokens are exactly the embedded prediction
    torch.manual_seed(3)
    captured = {}
    original = generation.foresight_tokens

    def capture(f_hat):
        captured["f_hat"] = f_hat
        return original(f_hat)

    generation.foresight_tokens = capture
    model.segment_outputs(batch)
    torch.testing.assert_close(captured["f_hat"], predicted)


def test_a_given_foresight_reproduces_the_sampled_plan(observation_factory):
    torch.manual_seed(0)
    model = F1Model(preset("tiny", **COMPLETE)).eval()
    inputs = model.parse(observation_factory())
    noise = torch.randn(1, 8, 7)
    sampled = model.sample(
        inputs, generator=torch.Generator().manual_seed(4), noise=noise, return_foresight=True
    )
    given = model.sample(
        inputs,
        generator=torch.Generator().manual_seed(9),
        noise=noise,
        foresight_indices=sampled.foresight.indices,
    )
    torch.testing.assert_close(given.actions, sampled.actions)
    uncached = model.sample(
        inputs,
        generator=torch.Generator(),
        noise=noise,
        foresight_indices=sampled.foresight.indices,
        use_cache=False,
    )
    torch.testing.assert_close(uncached.actions, sampled.actions, atol=1e-5, rtol=1e-5)
    other = [torch.zeros_like(i) for i in sampled.foresight.indices]
    changed = model.sample(inputs, generator=torch.Generator(), noise=noise, foresight_indices=other)
    assert not torch.allclose(changed.actions, sampled.actions)


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ("not a list", "expected a list of 4 scales"),
        ([torch.zeros(1, 1, dtype=torch.int64)] * 3, "expected a list of 4 scales"),
        (
            [torch.zeros(1, n, dtype=torch.int32) for n in (1, 4, 16, 64)],
            r"foresight_indices\[0\]: expected int64",
        ),
        (
            [torch.zeros(2, n, dtype=torch.int64) for n in (1, 4, 16, 64)],
            r"foresight_indices\[0\]: expected int64 \(1, 1\)",
        ),
        ([torch.full((1, n), 256, dtype=torch.int64) for n in (1, 4, 16, 64)], r"in \[0, 256\)"),
    ],
)
def test_a_bad_given_foresight_is_refused(observation_factory, indices, message):
    model = _model(**COMPLETE).eval()
    inputs = model.parse(observation_factory())
    with pytest.raises(InputError, match=message):
        model.sample(inputs, generator=torch.Generator(), foresight_indices=indices)


def test_modes_without_foresight_refuse_a_given_foresight(observation_factory):
    model = _model(mode="history_no_foresight").eval()
    inputs = model.parse(observation_factory())
    with pytest.raises(InputError, match="reads no foresight"):
        model.sample(inputs, generator=torch.Generator(), foresight_indices=[])


def test_cached_frame_codes_give_the_same_losses_as_frames(batch_factory):
    model = _model(**COMPLETE).eval()
    batch = _batch(batch_factory)
    history = batch["history"]
    b, t = history.shape[:2]
    latents, _ = model.frame_codes(history.flatten(0, 1))
    future_latents, future_indices = model.frame_codes(batch["future_image"])
    coded = {k: v for k, v in batch.items() if k not in ("history", "future_image")}
    coded["history.latents"] = latents.reshape(b, t, *latents.shape[1:])
    coded["future_image.latents"] = future_latents
    coded["future_image.indices"] = future_indices
    torch.manual_seed(5)
    from_frames = model(batch)
    torch.manual_seed(5)
    from_codes = model(coded)
    for name in from_frames:
        torch.testing.assert_close(from_codes[name], from_frames[name])
    # the codes are the tokenizer's: f_hat of every scale and the per-scale indices, concatenated
    targets = model.generation.target_indices(batch["future_image"] * 2 - 1)
    torch.testing.assert_close(future_indices, torch.cat(targets, 1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"history.latents": torch.zeros(3, 2, 16, 4, 4)}, r"history.latents: expected \(B, T, 16, 8, 8\)"),
        ({"history.latents": torch.full((3, 2, 16, 8, 8), float("nan"))}, "history.latents: expected finite"),
        ({"history.latents": torch.zeros(3, 5, 16, 8, 8)}, "history.latents: expected 1 to 2 frames"),
        (
            {"future_image.indices": torch.zeros(3, 85, dtype=torch.int32)},
            "future_image.indices: expected int64",
        ),
        ({"future_image.indices": torch.full((3, 85), 999, dtype=torch.int64)}, r"in \[0, 256\)"),
        ({"future_image.latents": torch.zeros(3, 16, 8)}, r"future_image.latents: expected \(B, 16, 8, 8\)"),
        ({"future_image.latents": torch.zeros(2, 16, 8, 8)}, "future_image.latents: expected batch size 3"),
    ],
)
def test_bad_cached_codes_are_refused_naming_the_key(batch_factory, change, message):
    model = _model(**COMPLETE).eval()
    batch = {k: v for k, v in _batch(batch_factory).items() if k not in ("history", "future_image")}
    batch["history.latents"] = torch.zeros(3, 2, 16, 8, 8)
    batch["future_image.latents"] = torch.zeros(3, 16, 8, 8)
    batch["future_image.indices"] = torch.zeros(3, 85, dtype=torch.int64)
    model(batch)  # the well-formed batch trains
    with pytest.raises(InputError, match=message):
        model({**batch, **change})


def test_several_noise_draws_share_the_prefix_and_average_the_flow_loss(batch_factory):
    batch = _batch(batch_factory)
    single = _model(action={"noise_draws": 1}).eval()
    several = _model(action={"noise_draws": 3}).eval()
    several.load_state_dict(single.state_dict())
    # the first draw consumes the RNG as the single draw does: the same action hidden states
    torch.manual_seed(6)
    one = single.segment_outputs(batch)
    torch.manual_seed(6)
    three = several.segment_outputs(batch)
    torch.testing.assert_close(three["act"], one["act"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(three["gen"], one["gen"], atol=1e-5, rtol=1e-5)
    # the loss averages three draws: different from the first draw's alone, and every draw gets gradient
    torch.manual_seed(6)
    loss_one = single(batch)["flow"]
    torch.manual_seed(6)
    loss_three = several.train()(batch)["flow"]
    assert torch.isfinite(loss_three)
    assert not torch.allclose(loss_one, loss_three)
    loss_three.backward()
    assert several.understanding.projector.linear.weight.grad.abs().sum() > 0


def test_config_refuses_bad_foresight_and_noise_settings():
    with pytest.raises(ConfigError, match="sampled_foresight"):
        GenerationConfig(sampled_foresight=0.5)
    with pytest.raises(ConfigError, match="sampled_foresight"):
        GenerationConfig(complete_foresight=True, sampled_foresight=1.5)
    with pytest.raises(ConfigError, match="complete_foresight"):
        GenerationConfig(complete_foresight="yes")
    with pytest.raises(ConfigError, match="noise_draws"):
        preset("tiny", action={"noise_draws": 0})


def test_a_policy_plans_with_the_foresight_its_source_gives(observation_factory):
    torch.manual_seed(0)
    policy = F1Policy(preset("tiny", **COMPLETE))
    observation = {k: v for k, v in observation_factory().items() if k not in ("history", "history_is_pad")}
    seen = []

    def copy_current(indices):
        seen.append([i.clone() for i in indices])
        return indices

    policy.foresight_source = copy_current
    policy.reset(seed=0)
    policy.select_action(observation)
    assert len(seen) == 1
    assert [tuple(i.shape) for i in seen[0]] == [(1, 1), (1, 4), (1, 16), (1, 64)]
    _, current = policy.model.frame_codes(observation["observation.images.front"])
    torch.testing.assert_close(torch.cat(seen[0], 1), current)  # the current frame's own codes
    assert policy.last_plan is not None


def test_futures_past_the_episode_end_are_not_generation_targets(batch_factory):
    model = _model().eval()
    batch = _batch(batch_factory)
    torch.manual_seed(7)
    everything = model(batch)["generation"]
    torch.manual_seed(7)
    # the padded samples' futures no longer count: changing them leaves the loss unchanged
    padded = {**batch, "future_image_is_pad": torch.tensor([False, True, True])}
    torch.manual_seed(7)
    first_only = model(padded)["generation"]
    other = dict(padded, future_image=batch["future_image"].clone())
    other["future_image"][1:] = torch.rand_like(other["future_image"][1:])
    torch.manual_seed(7)
    torch.testing.assert_close(model(other)["generation"], first_only)
    assert not torch.allclose(first_only, everything)
    torch.manual_seed(7)
    none = model({**batch, "future_image_is_pad": torch.ones(3, dtype=torch.bool)})["generation"]
    assert float(none.detach()) == 0.0
    with pytest.raises(InputError, match="future_image_is_pad: expected bool"):
        model({**batch, "future_image_is_pad": torch.zeros(3)})
