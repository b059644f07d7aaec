"""The demo's report, assembled in one place: report.json keeps the evaluation contract, report.md holds
the success table and the demo's sections."""

from __future__ import annotations

import json
from pathlib import Path

from f1.demo import DEMO_BUDGETS, RecordedDataset
from f1.demo.budget import TrainingSteps
from f1.demo.report import COMPARISONS, demo_report, report_markdown, write_report
from f1.demo.workers import StageRun
from f1.eval import Cell, read_report, wilson_interval
from f1.eval.foresight import ForesightSamples


def cell(policy, variant="dynamic", embodiment="gripper", successes=60, episodes=100):
    return Cell(
        policy=policy,
        variant=variant,
        embodiment=embodiment,
        episodes=episodes,
        successes=successes,
        success_rate=successes / episodes,
        ci95=wilson_interval(successes, episodes),
        mean_steps=30.0,
        eval_time_s=1.0,
    )


def quick_report(tmp_path: Path) -> dict:
    metrics = tmp_path / "f1" / "stage_II"
    metrics.mkdir(parents=True)
    (metrics / "metrics.jsonl").write_text(
        json.dumps({"step": 3, "loss": 1.5, "loss/flow": 1.0, "lr": 0.1}) + "\n"
    )
    recorded = RecordedDataset(tmp_path / "gripper", "gripper", ("static", "dynamic"), 4, 80, 1.0)
    return demo_report(
        budget=DEMO_BUDGETS["quick"],
        cells=[cell("f1"), cell("no_gen", successes=30), cell("history_no_foresight", successes=40)],
        references=[cell("expert_lead_unaware", successes=37)],
        foresight=ForesightSamples([], 2, 20.0, 30.0, 21.0),
        steps=TrainingSteps(12, (2, 6, 4), {}),
        curves={"f1": [StageRun("II", metrics, 0)]},
        recorded={"gripper": recorded},
        phases={"demonstrations": 1.0},
        wall_time_s=12.0,
        seed=0,
    )


def test_report_json_keeps_the_contract_and_the_run(tmp_path):
    report = quick_report(tmp_path)
    files = write_report(tmp_path / "out", report)
    read = read_report(files["report_json"])  # validates the contract
    assert read["quick"] is True
    assert [(c["a"], c["b"]) for c in read["comparisons"]] == list(COMPARISONS)
    assert read["budget"]["task"] == {  # the fields the demo sets, as report.json has always held them
        "resolution": 32,
        "num_objects": 1,
        "num_bins": 1,
        "grasp_radius": 0.075,
        "object_size": 0.15,
        "conveyor_speed_range": [0.06, 0.1],
    }
    assert read["training"]["f1_stage_steps"] == {"I": 2, "II": 6, "III": 4}
    assert read["training"]["control_stage_steps"] == {"II": 8, "III": 4}
    assert read["training"]["final_losses"] == {"f1": {"II": {"loss": 1.5, "loss/flow": 1.0}}}
    assert read["data"]["gripper"]["frames"] == 80
    assert read["foresight"]["psnr_imagined_db"] == 20.0


def test_markdown_report_holds_the_table_and_the_sections(tmp_path):
    text = report_markdown(quick_report(tmp_path))
    assert text.startswith("# F1 demo report (quick run)")
    assert "| F1 |" in text
    assert "| expert aiming at the object's current position |" in text
    for section in (
        "## F1 against the controls",
        "## Success rates",
        "## Foresight",
        "## Training",
        "## Run",
    ):
        assert section in text
    assert "| F1 - No-Gen | gripper dynamic | +30.0 |" in text
    assert "fixed by the budget." in text
