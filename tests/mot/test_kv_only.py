"""Keys/values-only experts (``ExpertConfig.last_layer_kv_only``): the dead last-layer tensors are not built,
and everything that is read (the other experts' outputs, every cached key and value) keeps its floats."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mot import (
    KV_ONLY_UNBUILT_LAYER_TENSORS,
    AttentionSpec,
    ConfigError,
    ExpertConfig,
    ExpertLayer,
    KVCache,
    MixtureOfTransformers,
    MoTConfig,
    Segment,
)
from mot.errors import ArgumentTypeError
from mot.expert import ExpertAttention

FAST = settings(max_examples=12, deadline=None)


def kv_only_twin(model: MixtureOfTransformers, *experts: str) -> MixtureOfTransformers:
    """``model`` with ``experts`` keys/values-only, holding the same values for every tensor it builds."""
    config = model.config
    changed = {
        name: dataclasses.replace(cfg, last_layer_kv_only=name in experts)
        for name, cfg in config.experts.items()
    }
    twin = MixtureOfTransformers(dataclasses.replace(config, experts=changed)).eval()
    kept = {k: v for k, v in model.state_dict().items() if k not in twin.unbuilt_tensors()}
    twin.load_state_dict(kept, strict=True)
    return twin


def mixed_spec() -> AttentionSpec:
    """A context and a query segment that see each other: one query group holds rows of both experts."""
    return AttentionSpec(
        [Segment("ctx", "und", 5, "full"), Segment("qry", "act", 3, "causal")],
        sees={"ctx": ["qry"], "qry": ["ctx"]},
    )


def test_state_dict_lacks_exactly_the_last_layer_tensors_that_feed_only_the_unread_output(uga_model):
    twin = kv_only_twin(uga_model, "und")
    dropped = set(uga_model.state_dict()) - set(twin.state_dict())
    last = uga_model.config.n_layers - 1
    expected = {f"experts.und.layers.{last}.{name}" for name in KV_ONLY_UNBUILT_LAYER_TENSORS}
    assert dropped == expected | {"experts.und.norm.weight"}
    assert set(twin.state_dict()) <= set(uga_model.state_dict())
    assert set(twin.unbuilt_tensors()) == dropped
    assert all("last_layer_kv_only" in why for why in twin.unbuilt_tensors().values())
    assert {f"experts.und.{name}" for name in twin.experts["und"].unbuilt_tensors} == dropped
    layer = twin.experts["und"].layers[last]
    assert {n for n, _ in layer.named_parameters()} == {
        "input_layernorm.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
    }
    assert not twin.experts["und"].has_outputs
    assert twin.experts["act"].has_outputs
    assert uga_model.unbuilt_tensors() == {}


@FAST
@given(
    und_valid=st.lists(st.integers(1, 6), min_size=2, max_size=2),
    act_valid=st.lists(st.integers(1, 5), min_size=2, max_size=2),
    kv_only=st.sampled_from([("und",), ("und", "gen")]),
)
def test_other_outputs_and_every_cached_key_value_are_bit_identical_to_the_full_model(
    uga_model, uga_spec, make_inputs, und_valid, act_valid, kv_only
):
    twin = kv_only_twin(uga_model, *kv_only)
    inputs = make_inputs(uga_model, uga_spec)
    valid = {"und": und_valid, "act": act_valid}
    upstream = {k: v for k, v in inputs.items() if k != "act"}
    with torch.no_grad():
        full, got = uga_model(inputs, uga_spec, valid), twin(inputs, uga_spec, valid)
        caches = [m.prefill(upstream, uga_spec, {"und": und_valid}) for m in (uga_model, twin)]
        extended = [m.extend({"act": inputs["act"]}, uga_spec, c) for m, c in zip((uga_model, twin), caches)]
    assert set(got) == {name for name in uga_spec.names if uga_spec.segment(name).expert not in kv_only}
    for name, out in got.items():
        assert torch.equal(out, full[name]), name
    for layer in range(uga_model.config.n_layers):
        assert torch.equal(caches[1].keys[layer], caches[0].keys[layer]), layer
        assert torch.equal(caches[1].values[layer], caches[0].values[layer]), layer
    assert torch.equal(extended[1]["act"], extended[0]["act"])


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_a_query_group_shared_with_a_reading_expert_still_attends_correctly(uga_model, make_inputs, backend):
    model = MixtureOfTransformers(dataclasses.replace(uga_model.config, attention_backend=backend)).eval()
    model.load_state_dict(uga_model.state_dict())
    twin = kv_only_twin(model, "und")
    spec = mixed_spec()
    inputs = make_inputs(model, spec)
    with torch.no_grad():
        full, got = model(inputs, spec, {"ctx": [5, 2]}), twin(inputs, spec, {"ctx": [5, 2]})
        caches = [m.prefill(inputs, spec, {"ctx": [5, 2]}) for m in (model, twin)]
    assert list(got) == ["qry"]
    assert torch.equal(got["qry"], full["qry"])
    assert all(
        torch.equal(a, b)
        for a, b in zip(caches[0].keys + caches[0].values, caches[1].keys + caches[1].values)
    )


def test_segment_by_segment_appends_store_every_layer_and_return_only_read_outputs(
    uga_model, uga_spec, make_inputs
):
    twin = kv_only_twin(uga_model, "und")
    inputs = make_inputs(uga_model, uga_spec)
    with torch.no_grad():
        full_cache, cache = KVCache(uga_spec), KVCache(uga_spec)
        for name in uga_spec.names:
            expected = uga_model.extend({name: inputs[name]}, uga_spec, full_cache, append=True)
            out = twin.extend({name: inputs[name]}, uga_spec, cache, append=True)
            assert set(out) == ({name} - {"und"})
            assert all(torch.equal(out[k], expected[k]) for k in out)
    assert cache.length == full_cache.length == uga_spec.total_length
    assert len(cache.keys) == uga_model.config.n_layers
    for a, b in itertools.chain(zip(cache.keys, full_cache.keys), zip(cache.values, full_cache.values)):
        assert torch.equal(a, b)


def test_every_built_parameter_gets_a_gradient_where_the_full_model_leaves_the_dead_ones_without(
    uga_model, uga_spec, make_inputs
):
    full = MixtureOfTransformers(uga_model.config)
    full.load_state_dict(uga_model.state_dict())
    twin = kv_only_twin(full, "und")
    inputs = make_inputs(full, uga_spec)
    for model in (full, twin):
        out = model(inputs, uga_spec)
        sum(o.square().mean() for name, o in out.items() if name != "und").backward()
    without = {n for n, p in full.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    assert without == set(twin.unbuilt_tensors())  # q_proj's gradient is there but exactly zero
    for name, parameter in twin.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.slow
def test_compiled_layers_of_a_kv_only_model_equal_eager_within_1e_5(uga_model, uga_spec, make_inputs):
    eager = kv_only_twin(uga_model, "und")
    compiled = kv_only_twin(uga_model, "und").compile_layers()
    inputs = make_inputs(eager, uga_spec)
    upstream = {k: v for k, v in inputs.items() if k != "act"}
    with torch.no_grad():
        caches = [model.prefill(upstream, uga_spec) for model in (eager, compiled)]
        for step in range(2):
            act = {"act": inputs["act"] + step}
            expected = eager.extend(act, uga_spec, caches[0])["act"]
            torch.testing.assert_close(
                compiled.extend(act, uga_spec, caches[1])["act"], expected, atol=1e-5, rtol=1e-5
            )
        out = compiled(inputs, uga_spec)
    assert set(out) == {"gen", "act"}
    for k_eager, k_compiled in zip(caches[0].keys, caches[1].keys):
        torch.testing.assert_close(k_compiled, k_eager, atol=1e-5, rtol=1e-5)


def test_the_option_round_trips_and_old_dicts_default_to_full_experts():
    config = MoTConfig(
        2, 4, 1, 8, experts={"und": ExpertConfig(8, 16, last_layer_kv_only=True), "act": ExpertConfig(8, 16)}
    )
    data = config.to_dict()
    assert data["experts"]["und"]["last_layer_kv_only"] is True
    assert MoTConfig.from_dict(data) == config
    del data["experts"]["und"]["last_layer_kv_only"]
    assert not MoTConfig.from_dict(data).experts["und"].last_layer_kv_only


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_non_bool_option_is_refused_naming_it(value):
    with pytest.raises(ConfigError, match=r"ExpertConfig\.last_layer_kv_only: expected a bool, received"):
        ExpertConfig(8, 16, last_layer_kv_only=value)


def test_a_model_whose_every_expert_is_kv_only_is_refused():
    with pytest.raises(ConfigError, match="at least one expert with last_layer_kv_only=False"):
        MoTConfig(1, 2, 1, 4, experts={"a": ExpertConfig(8, 8, last_layer_kv_only=True)})


def test_layers_refuse_a_non_bool_kv_only():
    config = MoTConfig(1, 2, 1, 4, experts={"a": ExpertConfig(8, 8)})
    with pytest.raises(ArgumentTypeError, match="kv_only: expected a bool, received int"):
        ExpertLayer(config.experts["a"], config, kv_only=1)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="kv_only: expected a bool, received str"):
        ExpertAttention(8, 2, 1, 4, kv_only="no")  # type: ignore[arg-type]


def test_the_last_layer_skips_the_attention_of_query_groups_that_nobody_reads(
    uga_model, uga_spec, make_inputs, monkeypatch
):
    import mot.model

    twin = kv_only_twin(uga_model, "und")
    inputs = make_inputs(uga_model, uga_spec)
    calls: list[int] = []

    def counted(q, k, v, mask, backend):
        calls.append(q.shape[2])
        return joint_attention(q, k, v, mask, backend)

    joint_attention = mot.model.joint_attention
    monkeypatch.setattr(mot.model, "joint_attention", counted)
    with torch.no_grad():
        twin.prefill({"und": inputs["und"]}, uga_spec)
        assert calls == [6] * (uga_model.config.n_layers - 1)  # the und group, in all but the last layer
        calls.clear()
        twin(inputs, uga_spec)
    # und, gen, act groups per layer; the last layer runs gen's and act's only
    assert calls == [6, 14, 5] * (uga_model.config.n_layers - 1) + [14, 5]
