"""Training the demo's policies in worker processes: scheduling, and the same results as in-process."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from f1.data import LeRobotDataset
from f1.demo.data import record_demonstrations
from f1.demo.policy import demo_policy_config, embodiment_from_stats
from f1.demo.training import StagePlan
from f1.demo.workers import (
    StageJob,
    StageRun,
    StepProbe,
    TrainingJob,
    measure_in_workers,
    plan_workers,
    train_jobs,
)
from f1.model import F1Policy


def test_plan_workers_puts_the_costliest_jobs_first_on_the_freest_worker():
    assert plan_workers([3.0, 1.0, 2.0], 1) == 6.0
    assert plan_workers([3.0, 1.0, 2.0], 2) == 3.0  # 3 | 2 + 1
    assert plan_workers([3.0, 1.0, 2.0], 3) == 3.0
    assert plan_workers([2.0, 2.0, 2.0], 2) == 4.0
    with pytest.raises(ValueError, match="workers"):
        plan_workers([1.0], 0)


def test_stage_runs_start_where_the_previous_stage_ended(tmp_path):
    plan = StagePlan(2, 5, 2, 1e-3)
    stages = (StageJob("I", tmp_path, plan), StageJob("II", tmp_path, replace(plan, steps=7)))
    job = TrainingJob("f1", tmp_path / "init", stages, tmp_path / "runs")
    assert job.stage_runs() == [
        StageRun("I", tmp_path / "runs" / "stage_I", 0),
        StageRun("II", tmp_path / "runs" / "stage_II", 5),
    ]


@pytest.fixture(scope="module")
def gripper_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers") / "gripper"
    record_demonstrations(
        root, {"resolution": 32, "num_objects": 1, "num_bins": 1}, "gripper", ("static",), 2
    )
    return root


def _jobs(root, runs, gripper_data):
    data = LeRobotDataset(gripper_data)
    embodiment = embodiment_from_stats("gripper", data.stats or data.compute_stats(), float(data.fps))
    jobs = []
    for mode in ("no_gen", "f1"):
        torch.manual_seed(0)
        F1Policy(demo_policy_config(mode, 32, (embodiment,))).save(root / mode)
        plans = [StageJob("II", gripper_data, StagePlan(2, 3, 2, 1e-3, {"flow": 1.0}))]
        if mode == "f1":
            plans.insert(0, StageJob("I", gripper_data, StagePlan(1, 2, 2, 1e-3)))
        jobs.append(TrainingJob(mode, root / mode, tuple(plans), runs / mode, seed=3, cost=len(plans)))
    return jobs


@pytest.mark.slow
def test_workers_train_the_same_policies_as_one_process(tmp_path, gripper_data):
    serial = _jobs(tmp_path / "init", tmp_path / "serial", gripper_data)
    parallel = _jobs(tmp_path / "init", tmp_path / "parallel", gripper_data)
    train_jobs(serial, workers=1)
    train_jobs(parallel, workers=2)
    for one, two in zip(serial, parallel, strict=True):
        for stage in one.stages:
            a = F1Policy.load(one.stage_dir(stage.name) / "policy").model.state_dict()
            b = F1Policy.load(two.stage_dir(stage.name) / "policy").model.state_dict()
            assert a.keys() == b.keys()
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    times = measure_in_workers(
        [
            StepProbe(job.name, F1Policy.load(job.initial).config, gripper_data, job.stages[-1].plan, 1)
            for job in serial
        ],
        workers=2,
    )
    assert set(times) == {"no_gen", "f1"}
    assert all(t > 0 for t in times.values())


def test_a_failing_job_raises_in_the_caller(tmp_path, gripper_data):
    jobs = _jobs(tmp_path / "init", tmp_path / "runs", gripper_data)
    broken = TrainingJob("broken", tmp_path / "missing", jobs[0].stages, tmp_path / "runs" / "broken")
    with pytest.raises(Exception, match="missing"):
        train_jobs([broken], workers=1)
    with pytest.raises(ValueError, match="workers"):
        train_jobs(jobs, workers=0)
