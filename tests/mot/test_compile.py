"""``MixtureOfTransformers.compile_layers``: the layers through ``torch.compile``, the rest in Python."""

from __future__ import annotations

import pytest
import torch

from mot import COMPILE_MODES, KVCache, MixtureOfTransformers, SpecError
from mot.errors import ArgumentTypeError


@pytest.mark.slow
def test_compiled_layers_equal_eager_within_1e_5_for_a_prefill_and_repeated_downstream_steps(
    uga_model: MixtureOfTransformers, uga_spec, randomized, make_inputs
) -> None:
    eager = uga_model
    compiled = randomized(MixtureOfTransformers(eager.config).eval()).compile_layers()
    assert compiled.layers_compiled
    assert not eager.layers_compiled
    inputs = make_inputs(eager, uga_spec)
    upstream = {k: v for k, v in inputs.items() if k != "act"}
    with torch.no_grad():
        caches = [model.prefill(upstream, uga_spec) for model in (eager, compiled)]
        for step in range(3):  # the same graph serves every ODE step of a plan
            act = {"act": inputs["act"] + step}
            expected = eager.extend(act, uga_spec, caches[0])["act"]
            torch.testing.assert_close(
                compiled.extend(act, uga_spec, caches[1])["act"], expected, atol=1e-5, rtol=1e-5
            )
    for k_eager, k_compiled in zip(caches[0].keys, caches[1].keys):
        torch.testing.assert_close(k_compiled, k_eager, atol=1e-5, rtol=1e-5)


def test_compile_layers_refuses_unknown_modes_and_non_bool_dynamic(uga_model: MixtureOfTransformers) -> None:
    model = MixtureOfTransformers(uga_model.config)
    with pytest.raises(SpecError, match=r"mode: expected None or one of \['default'"):
        model.compile_layers(mode="fastest")
    with pytest.raises(ArgumentTypeError, match="dynamic: expected a bool, received str"):
        model.compile_layers(dynamic="yes")  # type: ignore[arg-type]
    assert not model.layers_compiled
    assert "reduce-overhead" in COMPILE_MODES


def test_a_cache_is_unchanged_by_a_refused_call_of_a_compiled_model(
    uga_model: MixtureOfTransformers, uga_spec
) -> None:
    model = MixtureOfTransformers(uga_model.config).compile_layers()
    cache = KVCache(uga_spec)
    with pytest.raises(SpecError, match="unknown segment"):
        model.extend({"nope": torch.zeros(1, 1, 8)}, uga_spec, cache, append=True)
    assert cache.length == 0
