"""Evaluation of F1 on the embedded table tasks: closed-loop rollouts, success rates with confidence
intervals, the demo pipeline (``f1 demo``), its report and figures.

Quick start::

    from f1.envs import make_env, seed_range
    from f1.eval import ExpertAgent, evaluate

    result = evaluate(ExpertAgent(), lambda: make_env("gripper", "dynamic"), seed_range("test")[:100])
    result.success_rate, result.ci95        # 1.0, (0.963, 1.0)

    from f1.eval import run_demo
    run_demo("runs/demo", "quick")          # what `f1 demo --quick` does
"""

from f1.eval.agents import (
    Agent,
    ExpertAgent,
    LeRobotStylePolicy,
    PolicyAgent,
    RandomAgent,
    load_agent,
    observations_to_batch,
)
from f1.eval.demo import DEMO_BUDGETS, DemoBudget, DemoResult, run_demo
from f1.eval.demo_data import CAMERA, RecordedDataset, TaskSpec, record_demonstrations
from f1.eval.intervals import difference_interval, wilson_interval, z_score
from f1.eval.report import POLICIES, Cell, compare, read_report, success_table, validate_report
from f1.eval.rollouts import EvaluationResult, evaluate

__all__ = [
    "CAMERA",
    "DEMO_BUDGETS",
    "POLICIES",
    "Agent",
    "Cell",
    "DemoBudget",
    "DemoResult",
    "EvaluationResult",
    "ExpertAgent",
    "LeRobotStylePolicy",
    "PolicyAgent",
    "RandomAgent",
    "RecordedDataset",
    "TaskSpec",
    "compare",
    "difference_interval",
    "evaluate",
    "load_agent",
    "observations_to_batch",
    "read_report",
    "record_demonstrations",
    "run_demo",
    "success_table",
    "validate_report",
    "wilson_interval",
    "z_score",
]
