"""The demo's report, assembled in one place: report.json keeps the evaluation contract, report.md holds
the success table and the demo's sections."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from f1.demo import DEMO_BUDGETS, RecordedDataset
from f1.demo.budget import TrainingSteps
from f1.demo.report import COMPARISONS, OBJECT_ERROR_RATIO_TARGET, demo_report, report_markdown, write_report
from f1.demo.workers import StageRun
from f1.eval import Cell, EvaluationResult, read_report, validate_report, wilson_interval
from f1.eval.counterfactual import ActionChange, ActionChangeSummary, CounterfactualSuccess
from f1.eval.foresight import ForesightSamples, PositionError


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


def result(name, successes, episodes=100):
    return EvaluationResult(
        name,
        episodes,
        successes,
        successes / episodes,
        wilson_interval(successes, episodes),
        seeds=tuple(range(episodes)),
        success=tuple(i < successes for i in range(episodes)),
        steps=(30,) * episodes,
    )


def foresight_samples() -> ForesightSamples:
    """Imagined object error 0.02 and copy error 0.08 on the two anchors where both found it: ratio 0.25."""
    return ForesightSamples(
        [],
        3,
        20.0,
        30.0,
        21.0,
        psnr_no_motion_raw=23.0,
        token_accuracy_imagined=(0.5, 0.75),
        token_accuracy_copy=(0.5, 0.25),
        object_errors={
            "imagined": PositionError((0.01, 0.03, math.nan)),
            "copy": PositionError((0.08, 0.08, 0.08)),
            "tokenizer": PositionError((0.01, 0.01, 0.01)),
            "real": PositionError((0.005, 0.005, 0.005)),
        },
    )


def counterfactual() -> dict:
    change = ActionChangeSummary(
        anchors=4,
        executed_steps=2,
        reference="real",
        spread_abs=0.02,
        spread_l2=0.04,
        changes={
            "other_episode": ActionChange(0.01, 0.02, 0.5, 0.5),
            "copy": ActionChange(0.004, 0.008, 0.2, 0.2),
            "sampled": ActionChange(0.002, 0.004, 0.1, None),
        },
        actions={},
    )
    success = CounterfactualSuccess(
        {"own": result("f1", 60), "copy": result("f1 copy", 30), "other_episode": result("f1 other", 55)}
    )
    return {
        "policy": "f1",
        "stage": "II",
        "embodiment": "gripper",
        "variant": "dynamic",
        "anchor_seeds": 4,
        "bank_seeds": 3,
        "episodes": 100,
        "action_change": change.to_dict(),
        "success": success.to_dict(),
        "own_matches_success_table": True,
        "open_loop_time_s": 0.1,
        "closed_loop_time_s": 1.0,
    }


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
        references=[
            cell("expert_lead_unaware", successes=37),
            cell("state_clone_no_velocity", successes=20),
            cell("state_clone_velocity", successes=90),
            cell("state_clone_velocity", variant="static", successes=95),
        ],
        state_clones=[{"policy": "state_clone_velocity", "embodiment": "gripper", "variant": "dynamic"}],
        foresight=foresight_samples(),
        counterfactual=counterfactual(),
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
        "grasp_sensor": True,
    }
    assert read["training"]["f1_stage_steps"] == {"I": 2, "II": 6, "III": 4}
    assert read["training"]["control_stage_steps"] == {"II": 6, "III": 4}  # F1's stage I on top
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
        "## Does the foresight carry the future?",
        "## Is the foresight used?",
        "## Training",
        "## Run",
    ):
        assert section in text
    assert "| F1 - No-Gen | gripper dynamic | +30.0 |" in text
    assert "fixed by the budget." in text


def test_report_json_holds_the_clones_the_foresight_numbers_and_the_counterfactual(tmp_path):
    read = read_report(write_report(tmp_path / "out", quick_report(tmp_path))["report_json"])
    assert {r["policy"] for r in read["references"]} == {
        "expert_lead_unaware",
        "state_clone_no_velocity",
        "state_clone_velocity",
    }
    assert read["state_clones"]["episodes"] == DEMO_BUDGETS["quick"].clone_episodes
    assert read["state_clones"]["clones"][0]["policy"] == "state_clone_velocity"
    f = read["foresight"]
    assert f["psnr_no_motion_db"] == 21.0
    assert f["psnr_no_motion_raw_db"] == 23.0
    assert f["token_accuracy_imagined_finest"] == 0.75
    assert f["token_accuracy_copy_finest"] == 0.25
    assert f["object_error_ratio_imagined_to_copy"] == pytest.approx(0.25)
    assert f["object_error_ratio_target"] == OBJECT_ERROR_RATIO_TARGET
    assert f["meets_target"] is True
    c = read["counterfactual"]
    assert set(c["success"]) == {"own", "copy", "other_episode", "drop_copy", "drop_other_episode"}
    assert c["success"]["drop_copy"]["difference"] == pytest.approx(0.3)
    lo, hi = c["success"]["drop_copy"]["ci95"]
    assert 0 < lo < 0.3 < hi <= 1
    assert set(c["action_change"]["changes"]) == {"other_episode", "copy", "sampled"}


def test_report_json_without_foresight_use_measured_keeps_the_contract(tmp_path):
    report = quick_report(tmp_path)
    report["counterfactual"] = None
    validate_report(report)
    assert "Not measured: the F1 policy predicts no foresight." in report_markdown(report)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("references", 0, "success_rate"), 1.5, "references"),
        (("foresight", "token_accuracy_imagined_per_scale"), [0.5, 1.2], "token_accuracy_imagined"),
        (("foresight", "object_error_ratio_imagined_to_copy"), -0.1, "object_error_ratio"),
        (("counterfactual", "success", "drop_copy", "difference"), 0.9, "drop_copy"),
        (("counterfactual", "success", "copy", "success_rate"), -0.1, "'copy'"),
        (("counterfactual", "action_change", "changes", "copy", "mean_l2"), -1.0, "mean_l2"),
    ],
)
def test_validation_rejects_numbers_out_of_range_naming_the_key(tmp_path, path, value, message):
    report = json.loads(json.dumps(quick_report(tmp_path)))
    target = report
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=message):
        validate_report(report)


def test_markdown_report_answers_whether_the_foresight_carries_and_is_used(tmp_path):
    text = report_markdown(quick_report(tmp_path))
    assert "| clone of the expert on the true state, no velocity |" in text
    assert "| clone of the expert on the true state with velocity |" in text
    assert "the current frame through the tokenizer" in text
    assert "23.00 dB for the raw current frame" in text
    future = text[text.index("## Does the foresight carry the future?") :]
    assert "| finest-scale token accuracy (%) | 75.0 | 25.0 |" in future
    assert "| object error (table widths) | 0.020 (2/3 found) | 0.080 (3/3 found) |" in future
    assert "0.25: target met" in future
    assert "at most 0.5 of the copy baseline's error" in future
    used = text[text.index("## Is the foresight used?") :]
    assert "| another anchor's real future | 0.0100 | 0.0200 | 0.50 |" in used
    assert "| another episode's frames | 55.0 [45, 64] | +5.0 |" in used
    assert "| own foresight | 60.0 [50, 69] | - | - | - |" in used
    assert "| a copy of the current frame | 30.0 [22, 40] | +30.0 |" in used
    assert "repeats F1's cell" in used
