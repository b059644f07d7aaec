"""``action.prediction = "data"``: the action expert predicts the clean chunk (x-prediction), still flow
matching; ``action.noise_scale``: the noise a plan starts from."""

from __future__ import annotations

import pytest
import torch

from f1.errors import ConfigError
from f1.model import F1Model, preset


def _model(prediction: str) -> F1Model:
    torch.manual_seed(0)
    return F1Model(preset("tiny", mode="no_gen", action={"prediction": prediction})).eval()


def _with_flow_draw(batch: dict, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {**batch, "flow.noise": torch.randn(4, 8, 7, generator=g), "flow.time": torch.rand(4, generator=g)}


def _decoder_outputs(model: F1Model, value: torch.Tensor) -> None:
    """Make every embodiment adapter's decoder return ``value`` (``(B, H, A)``), whatever it reads."""
    for adapter in model.adapters.values():
        adapter.decode = lambda hidden: value[: hidden.shape[0]].to(hidden.dtype)


def test_the_data_loss_is_the_squared_error_of_the_predicted_chunk(batch_factory):
    batch = batch_factory(4, 0)
    data, velocity = _model("data"), _model("velocity")
    zeros = torch.zeros(4, 8, 7)
    _decoder_outputs(data, zeros)
    _decoder_outputs(velocity, zeros)
    inputs = data.parse(batch, need_actions=True)
    actions = inputs.actions["sim_arm"]
    # predicting zeros costs the mean squared normalized action, whatever the noise and the time
    for seed in (1, 2):
        loss = data(_with_flow_draw(batch, seed))["flow"]
        torch.testing.assert_close(loss, actions.pow(2).mean())
    # the velocity loss of the same output depends on the noise (its target is a - eps)
    first = velocity(_with_flow_draw(batch, 1))["flow"]
    second = velocity(_with_flow_draw(batch, 2))["flow"]
    assert not torch.allclose(first, second)
    noise = _with_flow_draw(batch, 1)["flow.noise"]
    torch.testing.assert_close(first, (actions - noise).pow(2).mean())


@pytest.mark.parametrize("solver", ["euler", "midpoint"])
def test_sampling_a_data_prediction_returns_the_predicted_chunk(observation_factory, solver):
    model = _model("data")
    model.config = model.config.with_overrides({"action.solver": solver})
    chunk = torch.randn(1, 8, 7, generator=torch.Generator().manual_seed(3)).clamp(-1, 1)
    _decoder_outputs(model, chunk)
    inputs = model.parse({k: v for k, v in observation_factory().items() if k != "history"})
    plan = model.sample(inputs, generator=torch.Generator().manual_seed(0))
    expected = model.embodiments.get("sim_arm").unnormalize_action(chunk)
    torch.testing.assert_close(plan.actions, expected, rtol=1e-4, atol=1e-4)


def test_a_data_predicting_model_trains_and_samples_finite_actions(batch_factory, observation_factory):
    model = _model("data").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = batch_factory(4, 0)
    losses = []
    for _ in range(5):
        loss = model(batch)["flow"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    plan = model.eval().sample(model.parse(observation_factory()), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(plan.actions).all()


def test_config_refuses_unknown_predictions_and_data_with_pi0s_convention():
    with pytest.raises(ConfigError, match=r"action\.prediction"):
        preset("tiny", action={"prediction": "epsilon"})
    with pytest.raises(ConfigError, match=r"action\.prediction: pi0's time convention"):
        preset("tiny", action={"prediction": "data", "time_convention": "pi0"})
    for solver in ("heun", "rk4", "rk4_38"):  # they evaluate the field at tau = 1
        with pytest.raises(ConfigError, match=rf"action\.solver: '{solver}' evaluates the field at tau = 1"):
            preset("tiny", action={"prediction": "data", "solver": solver})
    assert preset("tiny").action.prediction == "velocity"  # pi0's and F1's head, as published


def test_a_zero_noise_scale_plans_one_deterministic_chunk(observation_factory):
    torch.manual_seed(0)
    model = F1Model(preset("tiny", mode="no_gen")).eval()
    inputs = model.parse({k: v for k, v in observation_factory().items() if k != "history"})

    def plan(seed: int) -> torch.Tensor:
        return model.sample(inputs, generator=torch.Generator().manual_seed(seed)).actions

    assert not torch.allclose(plan(0), plan(1))  # unit noise: another seed, another chunk
    model.config = model.config.with_overrides({"action.noise_scale": 0.0})
    torch.testing.assert_close(plan(0), plan(1), rtol=0, atol=0)
    zero = model.sample(inputs, generator=torch.Generator(), noise=torch.zeros(1, 8, 7)).actions
    torch.testing.assert_close(plan(0), zero, rtol=0, atol=0)  # the same as starting from the origin
    for bad in (-0.5, float("nan"), "1"):
        with pytest.raises(ConfigError, match=r"action\.noise_scale"):
            preset("tiny", action={"noise_scale": bad})
