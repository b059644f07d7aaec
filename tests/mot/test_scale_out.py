"""What scale-out relies on: layer units (the modules FSDP2 shards together), every use of a layer's weights
going through the module (so its hooks see it), and activation checkpointing that changes nothing."""

from __future__ import annotations

import copy

import pytest
import torch

from mot import KVCache, MixtureOfTransformers, SpecError
from mot.errors import ArgumentTypeError
from mot.expert import ExpertLayer
from mot.model import LayerEnd


def test_layer_units_hold_every_experts_layer_of_one_depth_in_expert_order_then_its_end(uga_model) -> None:
    units = uga_model.layer_units()
    assert len(units) == uga_model.config.n_layers
    for index, unit in enumerate(units):
        *layers, end = unit
        assert all(isinstance(layer, ExpertLayer) for layer in layers)
        assert [id(layer) for layer in layers] == [id(e.layers[index]) for e in uga_model.experts.values()]
        assert isinstance(end, LayerEnd)
        assert not list(end.parameters())
    in_units = {id(p) for unit in units for layer in unit for p in layer.parameters()}
    outside = [n for n, p in uga_model.named_parameters() if id(p) not in in_units]
    assert outside == [f"experts.{name}.norm.weight" for name in uga_model.experts]  # only the final norms


def test_both_halves_of_every_layer_run_through_the_module_so_its_hooks_see_them(
    uga_model, uga_spec, make_inputs, randomized
) -> None:
    calls: list[tuple[int, bool]] = []
    ends: list[int] = []
    handles = [
        layer.register_forward_hook(lambda m, args, out, i=i: calls.append((i, len(args) == 2)))
        for i, unit in enumerate(uga_model.layer_units())
        for layer in unit[:-1]
    ]
    handles += [
        unit[-1].register_forward_hook(lambda m, args, out, i=i: ends.append(i))
        for i, unit in enumerate(uga_model.layer_units())
    ]
    try:
        uga_model(make_inputs(uga_model, uga_spec), uga_spec)
    finally:
        for handle in handles:
            handle.remove()
    assert ends == list(range(uga_model.config.n_layers))
    experts = len(uga_model.experts)
    # per layer: every expert projects (one argument), then every expert finishes (x, attended)
    assert calls == [
        (i, finishing)
        for i in range(uga_model.config.n_layers)
        for finishing in (False, True)
        for _ in range(experts)
    ]


def test_activation_checkpointing_changes_no_output_and_no_gradient(
    uga_model, uga_spec, make_inputs, randomized
) -> None:
    plain = randomized(copy.deepcopy(uga_model), seed=3)
    recomputing = copy.deepcopy(plain).set_activation_checkpointing(True)
    assert recomputing.activation_checkpointing
    assert not plain.activation_checkpointing
    results = []
    for model in (plain, recomputing):
        inputs = {k: v.requires_grad_(True) for k, v in make_inputs(model, uga_spec).items()}
        outputs = model(inputs, uga_spec)
        loss = sum((out.square().mean() for out in outputs.values()), torch.zeros(()))
        loss.backward()
        results.append(
            (
                outputs,
                {n: p.grad.clone() for n, p in model.named_parameters()},
                {k: v.grad.clone() for k, v in inputs.items()},
            )
        )
    (out_a, grads_a, in_a), (out_b, grads_b, in_b) = results
    for name in out_a:
        assert torch.equal(out_a[name], out_b[name]), name
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6, rtol=0), name
    for name in in_a:
        assert torch.allclose(in_a[name], in_b[name], atol=1e-6, rtol=0), name


def test_activation_checkpointing_saves_fewer_tensors_for_backward(
    uga_model, uga_spec, make_inputs, randomized
) -> None:
    def saved_bytes(model: MixtureOfTransformers) -> int:
        storages: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        inputs = {k: v.requires_grad_(True) for k, v in make_inputs(model, uga_spec, batch=4).items()}
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(inputs, uga_spec)
        return sum(storages.values())

    plain = copy.deepcopy(uga_model)
    assert saved_bytes(copy.deepcopy(plain).set_activation_checkpointing(True)) < saved_bytes(plain) / 2


def test_activation_checkpointing_leaves_calls_without_gradients_and_caches_unchanged(
    uga_model, uga_spec, make_inputs, randomized
) -> None:
    plain = randomized(copy.deepcopy(uga_model), seed=4)
    recomputing = copy.deepcopy(plain).set_activation_checkpointing(True)
    inputs = make_inputs(plain, uga_spec)
    upstream = {k: inputs[k] for k in ("und", "gen")}
    caches = []
    for model in (plain, recomputing):
        cache = KVCache(uga_spec)
        with torch.no_grad():
            model.extend(upstream, uga_spec, cache, append=True)
            caches.append((cache, model.extend({"act": inputs["act"]}, uga_spec, cache)["act"]))
    (cache_a, act_a), (cache_b, act_b) = caches
    assert torch.equal(act_a, act_b)
    assert all(
        torch.equal(a, b) for a, b in zip(cache_a.keys + cache_a.values, cache_b.keys + cache_b.values)
    )


@pytest.mark.parametrize("value", [1, "yes", None])
def test_activation_checkpointing_takes_only_a_bool(uga_model, value) -> None:
    model = copy.deepcopy(uga_model)
    with pytest.raises(ArgumentTypeError, match="enabled: expected a bool"):
        model.set_activation_checkpointing(value)
    assert model.activation_checkpointing is False


def test_under_autocast_the_model_takes_autocast_and_weight_dtype_inputs(
    uga_model, uga_spec, make_inputs
) -> None:
    inputs = make_inputs(uga_model, uga_spec)
    mixed = {**inputs, "und": inputs["und"].bfloat16()}  # projections come in bf16, embeddings in fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = uga_model(mixed, uga_spec)
        cache = uga_model.prefill({k: mixed[k] for k in ("und", "gen")}, uga_spec)
        downstream = uga_model.extend({"act": inputs["act"]}, uga_spec, cache)
    reference = uga_model(inputs, uga_spec)
    for name, value in outputs.items():
        assert torch.allclose(value.float(), reference[name], atol=0.1, rtol=0.05), name
    assert cache.keys[0].dtype == torch.bfloat16
    assert torch.allclose(downstream["act"].float(), reference["act"], atol=0.1, rtol=0.05)


def test_outside_autocast_an_input_of_another_dtype_is_refused(uga_model, uga_spec, make_inputs) -> None:
    inputs = make_inputs(uga_model, uga_spec)
    with pytest.raises(SpecError, match=r"inputs\['und'\]: expected dtype torch.float32 on cpu"):
        uga_model({**inputs, "und": inputs["und"].bfloat16()}, uga_spec)
