"""What data-parallel training needs from the model: shard units, activation checkpointing, and flow noise
and time that may travel with the batch."""

from __future__ import annotations

import pytest
import torch

from f1.errors import ConfigError, InputError


def test_shard_units_are_every_trunk_layer_of_every_expert_then_every_vision_block(tiny_model) -> None:
    model = tiny_model()
    units = model.shard_units()
    layers = model.config.trunk.n_layers
    assert [len(unit) for unit in units[:layers]] == [len(model.trunk.experts) + 1] * layers
    blocks = list(model.understanding.vision.backbone.blocks)
    assert [unit[0] for unit in units[layers:]] == blocks
    unit_params = {id(p) for unit in units for module in unit for p in module.parameters()}
    layer_params = [p for expert in model.trunk.experts.values() for p in expert.layers.parameters()]
    block_params = [p for block in blocks for p in block.parameters()]
    assert all(id(p) in unit_params for p in layer_params + block_params)
    assert len(unit_params) == len(layer_params) + len(block_params)  # the rest is the root's


def test_activation_checkpointing_changes_no_loss_and_no_gradient(tiny_model, batch_factory) -> None:
    results = []
    for enabled in (False, True):
        model = tiny_model(fresh=True).train().set_activation_checkpointing(enabled)
        torch.manual_seed(3)
        losses = model(batch_factory(seed=2))
        sum(losses.values()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append(({k: v.detach() for k, v in losses.items()}, grads))
    (losses_a, grads_a), (losses_b, grads_b) = results
    assert all(torch.allclose(losses_a[k], losses_b[k], atol=1e-6, rtol=0) for k in losses_a)
    assert grads_a.keys() == grads_b.keys()
    assert all(torch.allclose(grads_a[k], grads_b[k], atol=1e-6, rtol=0) for k in grads_a)


def test_activation_checkpointing_takes_only_a_bool(tiny_model) -> None:
    with pytest.raises(ConfigError, match="enabled: expected a bool, received int"):
        tiny_model(fresh=True).set_activation_checkpointing(1)


def _with_flow(batch: dict, seed: int = 7, draws: int | None = None) -> dict:
    generator = torch.Generator().manual_seed(seed)
    size, horizon, dim = batch["action"].shape
    lead = (size,) if draws is None else (size, draws)
    return {
        **batch,
        "flow.noise": torch.randn(*lead, horizon, dim, generator=generator),
        "flow.time": torch.rand(*lead, generator=generator),
    }


def test_flow_noise_and_time_from_the_batch_replace_the_global_rng(tiny_model, batch_factory) -> None:
    model = tiny_model(fresh=True).train()
    batch = _with_flow(batch_factory(seed=1))
    torch.manual_seed(0)
    first = model(batch)["flow"]
    torch.manual_seed(123)  # another global stream: the same loss, since the batch brings the randomness
    assert torch.equal(model(batch)["flow"], first)
    # each sample's randomness travels with it: halves of the batch average to the whole batch's loss
    halves = [
        model({k: (v[rows] if isinstance(v, torch.Tensor | list) else v) for k, v in batch.items()})["flow"]
        for rows in (slice(0, 2), slice(2, 4))
    ]
    assert torch.allclose((halves[0] + halves[1]) / 2, first, atol=1e-6, rtol=0)
    torch.manual_seed(0)
    assert not torch.equal(model(batch_factory(seed=1))["flow"], first)  # without: the model draws them


def test_several_flow_draws_read_a_draw_axis(tiny_model, batch_factory) -> None:
    model = tiny_model(fresh=True, action={"noise_draws": 3}).train()
    batch = _with_flow(batch_factory(seed=1), draws=3)
    torch.manual_seed(0)
    first = model(batch)["flow"]
    torch.manual_seed(5)
    assert torch.equal(model(batch)["flow"], first)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.pop("flow.time"), r"flow.time: missing from the batch; flow.noise comes with it"),
        (lambda b: b.pop("flow.noise"), r"flow.noise: missing from the batch; flow.time comes with it"),
        (
            lambda b: b.update({"flow.time": b["flow.time"] * 2 + 1}),
            r"flow.time: expected values in \[0, 1\]",
        ),
        (
            lambda b: b.update({"flow.time": b["flow.time"][:2]}),
            r"flow.time: expected float \(4,\) or \(4, 1\)",
        ),
        (lambda b: b.update({"flow.noise": b["flow.noise"][:, :3]}), r"flow.noise: expected \(4, 8, A\)"),
        (
            lambda b: b.update({"flow.noise": b["flow.noise"][..., :5]}),
            r"flow.noise: expected last dimension 7",
        ),
        (
            lambda b: b["flow.noise"].__setitem__((0, 0, 0), float("nan")),
            r"flow.noise.*(finite|NaN|nan)",
        ),
    ],
)
def test_bad_flow_noise_and_time_are_named(tiny_model, batch_factory, change, message) -> None:
    batch = _with_flow(batch_factory(seed=1))
    change(batch)
    with pytest.raises(InputError, match=message):
        tiny_model()(batch)


def test_a_training_pass_runs_under_bf16_autocast_with_the_tokenizer_exact(tiny_model, batch_factory) -> None:
    model = tiny_model(fresh=True).train()
    batch = batch_factory(seed=1)
    generation = model.generation
    frames = torch.rand(2, 3, 64, 64) * 2 - 1
    exact = generation.target_indices(frames)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(0)
        losses = model(batch)
        under_autocast = generation.target_indices(frames)
    torch.manual_seed(0)
    reference = model(batch)
    assert all(torch.equal(a, b) for a, b in zip(exact, under_autocast))  # the same tokens, bit for bit
    for name, value in losses.items():
        assert torch.isfinite(value)
        assert value.item() == pytest.approx(reference[name].item(), rel=0.05), name
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads
    assert all(bool(torch.isfinite(g).all()) for g in grads)
