"""The report contract (report.json), the success table, the figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from f1.eval import Cell, compare, read_report, success_table, validate_report
from f1.eval.plots import ForesightRow, TrainingCurve, plot_foresight, plot_success, plot_training_curves
from f1.eval.report import write_report_json


def cell(policy="f1", variant="dynamic", embodiment="gripper", successes=60, episodes=100):
    from f1.eval import wilson_interval

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


def report(cells):
    return {"wall_time_s": 12.0, "cells": [c.to_dict() for c in cells]}


def test_report_round_trip_keeps_the_contract(tmp_path):
    cells = [cell(), cell("no_gen", successes=30)]
    path = write_report_json(tmp_path / "report.json", report(cells))
    loaded = read_report(path)
    assert loaded["wall_time_s"] == 12.0
    first = loaded["cells"][0]
    for key in ("policy", "variant", "embodiment", "episodes", "success_rate", "ci95"):
        assert key in first
    assert first["ci95"][0] <= first["success_rate"] <= first["ci95"][1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"wall_time_s": None}, "wall_time_s"),
        ({"cells": []}, "cells"),
    ],
)
def test_validate_report_rejects_a_broken_report(change, message):
    broken = {**report([cell()]), **change}
    with pytest.raises(ValueError, match=message):
        validate_report(broken)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("policy", "pi0", "policy"),
        ("variant", "windy", "variant"),
        ("embodiment", "hand", "embodiment"),
        ("ci95", [0.9, 1.0], "lo <= success_rate"),
    ],
)
def test_validate_report_rejects_a_broken_cell(key, value, message):
    entry = cell().to_dict()
    entry[key] = value
    with pytest.raises(ValueError, match=message):
        validate_report({"wall_time_s": 1.0, "cells": [entry]})


def test_validate_report_names_missing_cell_keys():
    entry = cell().to_dict()
    del entry["ci95"]
    with pytest.raises(ValueError, match="ci95"):
        validate_report({"wall_time_s": 1.0, "cells": [entry]})


def test_compare_gives_the_difference_and_whether_its_interval_excludes_zero():
    cells = [cell("f1", successes=67), cell("no_gen", successes=33)]
    (comparison,) = compare(cells, "f1", "no_gen")
    assert comparison["difference"] == pytest.approx(0.34)
    assert comparison["excludes_zero"] is True
    assert comparison["ci95"][0] > 0


def test_success_table_has_a_row_per_policy_and_a_column_per_cell():
    cells = [cell(), cell("expert", successes=100), cell("f1", variant="static", successes=90)]
    table = success_table([c.to_dict() for c in cells])
    lines = table.splitlines()
    assert lines[0] == "| policy | gripper static | gripper dynamic |"
    assert lines[2].startswith("| F1 | 90.0 [")
    assert lines[3].startswith("| scripted expert | - | 100.0 [")


def test_figures_are_written_as_png(tmp_path):
    cells = [
        cell(p, v, e).to_dict()
        for p in ("f1", "random")
        for v in ("static", "dynamic")
        for e in ("gripper", "arm")
    ]
    success = plot_success(cells, tmp_path / "success.png")
    records = [{"step": s, "loss/flow": 1.0 / s, "loss": 1.0 / s} for s in range(1, 11)]
    curves = plot_training_curves(
        {
            "flow": [
                (TrainingCurve("F1", "II", records), "loss/flow"),
                (TrainingCurve("F1", "III", records, 10), "loss/flow"),
            ]
        },
        tmp_path / "curves.png",
    )
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    row = ForesightRow(history=[image, image], predicted=image, real=image, reconstructed=image, caption="x")
    foresight = plot_foresight([row, row], tmp_path / "foresight.png", stride=2)
    for path in (success, curves, foresight):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_json_is_plain_json(tmp_path):
    path = write_report_json(tmp_path / "r.json", report([cell()]))
    assert json.loads(path.read_text())["cells"][0]["policy"] == "f1"
