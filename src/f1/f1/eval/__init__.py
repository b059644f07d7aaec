"""Evaluation of F1 on the embedded table tasks and in any gymnasium environment (through the declared
mapping of :mod:`f1.eval.gym_adapter`): agents, closed-loop rollouts, success rates with confidence
intervals, comparisons and success tables, figures, foresight metrics, the policy benchmark and behaviour
clones on privileged true state (reference rows, :mod:`f1.eval.state_clone`).

The ``f1 demo`` experiment, which uses all of these, is its own wing (:mod:`f1.demo`); nothing here
imports it, nor the trainer.

Quick start::

    from f1.envs import make_env, seed_range
    from f1.eval import ExpertAgent, evaluate

    result = evaluate(ExpertAgent(), lambda: make_env("gripper", "dynamic"), seed_range("test")[:100])
    result.success_rate, result.ci95        # 1.0, (0.963, 1.0)
"""

from f1.eval.agents import (
    Agent,
    ExpertAgent,
    LeRobotStylePolicy,
    MeanActionAgent,
    PolicyAgent,
    RandomAgent,
    load_agent,
    observations_to_batch,
)
from f1.eval.counterfactual import (
    ActionChange,
    ActionChangeSummary,
    CounterfactualSuccess,
    ForesightBank,
    compare_foresights,
    copy_current_frame,
    counterfactual_success,
    foresight_action_change,
)
from f1.eval.foresight import (
    ForesightAnchors,
    ForesightSamples,
    PositionError,
    collect_anchors,
    collect_foresight,
    locate_colour,
    measure_foresight,
)
from f1.eval.gym_adapter import GymAdapter, GymTask, check_policy_fits, load_env_factory
from f1.eval.intervals import difference_interval, wilson_interval, z_score
from f1.eval.report import POLICIES, Cell, compare, read_report, success_table, validate_report
from f1.eval.rollouts import EvaluationResult, evaluate, held_out_seeds
from f1.eval.state_clone import (
    StateClone,
    StateCloneAgent,
    StateCloneTraining,
    state_features,
    train_state_clone,
)

__all__ = [
    "POLICIES",
    "ActionChange",
    "ActionChangeSummary",
    "Agent",
    "Cell",
    "CounterfactualSuccess",
    "EvaluationResult",
    "ExpertAgent",
    "ForesightAnchors",
    "ForesightBank",
    "ForesightSamples",
    "GymAdapter",
    "GymTask",
    "LeRobotStylePolicy",
    "MeanActionAgent",
    "PolicyAgent",
    "PositionError",
    "RandomAgent",
    "StateClone",
    "StateCloneAgent",
    "StateCloneTraining",
    "check_policy_fits",
    "collect_anchors",
    "collect_foresight",
    "compare",
    "compare_foresights",
    "copy_current_frame",
    "counterfactual_success",
    "difference_interval",
    "evaluate",
    "foresight_action_change",
    "held_out_seeds",
    "load_agent",
    "load_env_factory",
    "locate_colour",
    "measure_foresight",
    "observations_to_batch",
    "read_report",
    "state_features",
    "success_table",
    "train_state_clone",
    "validate_report",
    "wilson_interval",
    "z_score",
]
