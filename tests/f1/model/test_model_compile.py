"""``F1Policy.compile`` / ``F1Model.compile_inference``: the same plans through ``torch.compile``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from f1.errors import ConfigError
from f1.model import F1Policy


@pytest.mark.slow
def test_a_compiled_policy_plans_the_eager_actions_within_1e_5_on_cpu(
    tiny_policy: Callable[..., F1Policy], observation_factory: Callable[..., dict[str, Any]]
) -> None:
    eager = tiny_policy()
    torch.manual_seed(0)
    compiled = tiny_policy(fresh=True)
    compiled.model.load_state_dict(eager.model.state_dict())
    assert compiled.compile() is compiled
    assert compiled.model.is_compiled
    assert not eager.model.is_compiled
    for seed in (0, 1):  # the second plan reuses the graphs of the first: it may not compile any
        observation = observation_factory(seed)
        expected = eager.plan(observation, seed=seed, return_foresight=True)
        with torch.compiler.set_stance("fail_on_recompile" if seed else "default"):
            got = compiled.plan(observation, seed=seed, return_foresight=True)
        torch.testing.assert_close(got.actions, expected.actions, atol=1e-5, rtol=1e-5)
        # greedy or sampled, the tokens agree here: no near tie in this tiny model's logits
        assert all(torch.equal(a, b) for a, b in zip(got.foresight.indices, expected.foresight.indices))


def test_compile_refuses_bad_modes_and_leaves_the_model_eager(tiny_policy: Callable[..., F1Policy]) -> None:
    policy = tiny_policy(fresh=True)
    with pytest.raises(ConfigError, match=r"mode: expected None or one of \['default', 'reduce-overhead'"):
        policy.compile(mode="fastest")
    with pytest.raises(ConfigError, match="dynamic: expected a bool, received int"):
        policy.model.compile_inference(dynamic=1)  # type: ignore[arg-type]
    assert not policy.model.is_compiled


@pytest.mark.slow
def test_a_compiled_data_predicting_policy_plans_the_eager_actions(
    tiny_policy: Callable[..., F1Policy], observation_factory: Callable[..., dict[str, Any]]
) -> None:
    # the compiled ODE step takes the data prediction's velocity inside its one region
    eager = tiny_policy("no_gen", fresh=True, action={"prediction": "data"})
    compiled = tiny_policy("no_gen", fresh=True, action={"prediction": "data"})
    compiled.model.load_state_dict(eager.model.state_dict())
    compiled.compile()
    observation = {k: v for k, v in observation_factory(0).items() if k != "history"}
    expected = eager.plan(observation, seed=0).actions
    torch.testing.assert_close(compiled.plan(observation, seed=0).actions, expected, atol=1e-5, rtol=1e-5)
