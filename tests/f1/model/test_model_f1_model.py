"""The composed model: the trainer's contract, UGA at the model level, masked flow loss, modes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from f1.model import Embodiment, F1Model, F1Policy, InputError, UnknownEmbodimentError, preset

ALLOWED_GROUPS = {"vision", "understanding", "generation", "action", "tokenizer", "embodiment"}
FIXTURE_SETTINGS = settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("mode", ["f1", "no_gen", "history_no_foresight"])
def test_parameter_groups_hold_every_parameter_exactly_once(tiny_model, mode: str) -> None:
    model = tiny_model(mode)
    groups = model.parameter_groups()
    assert set(groups) <= ALLOWED_GROUPS
    grouped = [id(p) for params in groups.values() for p in params]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters()}
    assert ("generation" in groups) == (mode != "no_gen")
    assert all(not p.requires_grad for p in groups.get("tokenizer", []))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("f1", {"flow", "generation"}), ("no_gen", {"flow"}), ("history_no_foresight", {"flow"})],
)
def test_compute_losses_return_scalars_that_give_every_trainable_parameter_a_gradient(
    tiny_model, batch_factory, mode: str, expected: set[str]
) -> None:
    # what lets DDP run without find_unused_parameters: nothing built is left without a gradient
    # (the keys/values-only last layers build nothing that feeds only unread outputs)
    model = tiny_model(mode, fresh=True).train()
    losses = model(batch_factory(4), generation_scales=None)
    assert set(losses) == expected
    assert all(loss.ndim == 0 and torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, name
            assert parameter.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.parameter_groups().get("tokenizer", []))


def test_generation_loss_teacher_forces_the_requested_number_of_scales(tiny_model, batch_factory) -> None:
    model = tiny_model("f1")
    batch = batch_factory(2)
    for scales, tokens in ((1, 1), (2, 5), (None, 85)):  # tiny schedule 1, 2, 4, 8 -> 1, 4, 16, 64 tokens
        assert model.segment_outputs(batch, generation_scales=scales)["gen"].shape[1] == tokens
    with pytest.raises(InputError, match=r"generation_scales: expected an int in \[1, 4\]"):
        model(batch, generation_scales=5)


def _outputs_and_understanding_keys_values(
    model: F1Model, batch: dict, seed: int, **kwargs
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """The training pass's segment outputs, and the understanding expert's keys and values of every layer
    (it has no outputs: its keys and values are what the other segments read)."""
    captured: list[torch.Tensor] = []
    hooks = [
        projection.register_forward_hook(lambda module, args, out: captured.append(out))
        for layer in model.trunk.experts["und"].layers
        for projection in (layer.self_attn.k_proj, layer.self_attn.v_proj)
    ]
    try:
        torch.manual_seed(seed)
        outputs = model.segment_outputs(batch, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs, captured


@FIXTURE_SETTINGS
@given(seed=st.integers(0, 2**16), state_shift=st.floats(-5, 5), action_shift=st.floats(-5, 5))
def test_state_noisy_actions_and_tau_never_change_the_foresight(
    tiny_model, batch_factory, seed: int, state_shift: float, action_shift: float
) -> None:
    model = tiny_model("f1")
    batch = batch_factory(2)
    reference, reference_kv = _outputs_and_understanding_keys_values(model, batch, 0, generation_scales=None)
    changed = dict(batch)
    changed["observation.state"] = batch["observation.state"] + state_shift
    changed["action"] = batch["action"] + action_shift
    # other flow noise and other tau
    outputs, kv = _outputs_and_understanding_keys_values(model, changed, seed, generation_scales=None)
    assert "und" not in outputs
    for segment in ("hist", "gen"):
        assert torch.equal(outputs[segment], reference[segment]), segment
    assert len(kv) == 2 * model.config.trunk.n_layers
    assert all(torch.equal(a, b) for a, b in zip(kv, reference_kv))


@FIXTURE_SETTINGS
@given(seed=st.integers(0, 2**16))
def test_history_frames_never_change_the_understanding(tiny_model, batch_factory, seed: int) -> None:
    model = tiny_model("f1")
    batch = batch_factory(2)
    reference, reference_kv = _outputs_and_understanding_keys_values(model, batch, 0)
    changed = dict(batch)
    changed["history"] = torch.rand(batch["history"].shape, generator=torch.Generator().manual_seed(seed))
    outputs, kv = _outputs_and_understanding_keys_values(model, changed, 0)
    assert all(torch.equal(a, b) for a, b in zip(kv, reference_kv))
    assert not torch.equal(outputs["hist"], reference["hist"])


@FIXTURE_SETTINGS
@given(pad_steps=st.integers(0, 7), junk=st.floats(-100, 100))
def test_flow_loss_ignores_masked_dimensions_and_padded_steps(
    tiny_model, batch_factory, pad_steps: int, junk: float
) -> None:
    arm = Embodiment(name="padded_arm", state_dim=8, action_dim=7, action_mask=(True,) * 5 + (False,) * 2)
    model = _padded_model(arm)
    batch = batch_factory(2)
    batch["embodiment"] = "padded_arm"
    batch["action_is_pad"] = torch.zeros(2, 8, dtype=torch.bool)
    batch["action_is_pad"][:, 8 - pad_steps :] = True
    torch.manual_seed(0)
    reference = model(batch)["flow"]
    changed = dict(batch)
    changed["action"] = batch["action"].clone()
    changed["action"][:, :, 5:] = junk  # masked dimensions
    changed["action"][:, 8 - pad_steps :] = junk  # padded steps
    torch.manual_seed(0)
    assert torch.equal(model(changed)["flow"], reference)


_PADDED: dict[str, F1Model] = {}


def _padded_model(arm: Embodiment) -> F1Model:
    if "model" not in _PADDED:
        torch.manual_seed(0)
        _PADDED["model"] = F1Model(preset("tiny", mode="no_gen", embodiments=(arm,))).eval()
    return _PADDED["model"]


def test_a_batch_may_mix_embodiments_of_different_dimensions(tiny_model, batch_factory) -> None:
    model = tiny_model("no_gen", fresh=True)
    model.add_embodiment(Embodiment(name="gripper", state_dim=3, action_dim=2))
    batch = batch_factory(4)
    batch["embodiment"] = ["sim_arm", "gripper", "sim_arm", "gripper"]
    losses = model(batch)
    assert torch.isfinite(losses["flow"])
    with pytest.raises(InputError, match=r"observation.state: expected last dimension 8"):
        model({**batch, "observation.state": torch.zeros(4, 3)})


def test_adding_an_embodiment_leaves_the_trunk_and_existing_outputs_untouched(
    tiny_model, observation_factory
) -> None:
    model = tiny_model("f1", fresh=True)
    policy = F1Policy(model)
    observation = observation_factory()
    before = policy.plan(observation, seed=0).actions
    trunk = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("adapters.")}
    policy.add_embodiment(Embodiment(name="quadruped", state_dim=12, action_dim=12, control_hz=50.0))
    after = {k: v for k, v in model.state_dict().items() if not k.startswith("adapters.")}
    assert trunk.keys() == after.keys()
    assert all(torch.equal(trunk[k], after[k]) for k in trunk)
    assert torch.equal(policy.plan(observation, seed=0).actions, before)
    quadruped = {**observation, "observation.state": torch.zeros(1, 12), "embodiment": "quadruped"}
    assert policy.plan(quadruped, seed=0).actions.shape == (1, 8, 12)


def test_frozen_gen_trains_no_generation_weight(tiny_model, batch_factory) -> None:
    base = preset("tiny")
    config = base.replace(generation=base.generation.__class__(**{**vars(base.generation), "frozen": True}))
    model = F1Model(config).train()
    assert all(not p.requires_grad for p in model.parameter_groups()["generation"])
    losses = model(batch_factory(2))
    assert not losses["generation"].requires_grad
    losses["flow"].backward()
    assert all(p.grad is None for p in model.parameter_groups()["generation"])
    assert any(p.grad is not None for p in model.parameter_groups()["understanding"])


def test_no_gen_has_no_generation_expert(tiny_model) -> None:
    model = tiny_model("no_gen")
    assert set(model.trunk.experts) == {"und", "act"}
    assert model.generation is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"embodiment": "ufo"}, "unknown embodiment 'ufo'"),
        (
            {"observation.images.front": torch.rand(2, 3, 32, 32)},
            r"expected \(B, 3, 64, 64\), received \(2, 3, 32, 32\)",
        ),
        ({"observation.state": torch.rand(2, 9)}, r"observation.state: expected last dimension 8"),
        ({"action": torch.rand(2, 5, 7)}, r"action: expected \(B, 8, A\)"),
        ({"task": ["only one"]}, "task: expected 2 instruction strings"),
        ({"history": torch.rand(2, 3, 3, 64, 64)}, r"history: expected 1 to 2 frames"),
        ({"observation.images.front": torch.full((2, 3, 64, 64), 2.0)}, r"expected float images in \[0, 1\]"),
    ],
)
def test_bad_batches_raise_errors_naming_the_key(tiny_model, batch_factory, change, message: str) -> None:
    batch = {**batch_factory(2), **change}
    error = UnknownEmbodimentError if "ufo" in str(change) else InputError
    with pytest.raises(error, match=message):
        tiny_model("f1")(batch)


def test_missing_keys_are_named(tiny_model, batch_factory) -> None:
    batch = batch_factory(2)
    for key in ("observation.images.front", "observation.state", "action", "history", "future_image", "task"):
        with pytest.raises(InputError, match=key):
            tiny_model("f1")({k: v for k, v in batch.items() if k != key})


def test_uint8_images_are_accepted(tiny_model, batch_factory) -> None:
    batch = batch_factory(2)
    as_bytes = {
        **batch,
        "observation.images.front": (batch["observation.images.front"] * 255).to(torch.uint8),
    }
    torch.manual_seed(0)
    assert torch.isfinite(tiny_model("f1")(as_bytes)["flow"])


def test_the_frozen_tokenizer_stays_in_eval_mode(tiny_model) -> None:
    model = tiny_model("f1", fresh=True).train()
    assert model.trunk.training
    assert not model.generation.tokenizer.training


@pytest.mark.parametrize("frames", [1, 2])
def test_any_number_of_history_frames_up_to_the_configured_maximum(tiny_model, batch_factory, frames) -> None:
    model = tiny_model("f1")
    batch = batch_factory(2, history_frames=frames)
    assert model.segment_outputs(batch)["hist"].shape == (2, 16, 64)  # 4 x 4 cells whatever the frame count
    padded = {**batch, "history_is_pad": torch.tensor([[False] * frames, [True] * (frames - 1) + [False]])}
    assert torch.isfinite(model(padded)["flow"])
