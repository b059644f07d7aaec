"""`f1 train` and `f1 export` for your own robot: docs/training.md's "Train F1 on your own robot" runs as
written (with fewer steps), the recipes are listed, and bad input exits 2 with one line, writing nothing."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
import torch
import yaml

from f1.cli import main
from f1.model import F1Policy

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_TESTS = Path(__file__).resolve().parent / "train"
if str(TRAIN_TESTS) not in sys.path:  # --import-mode=importlib puts no test folder on sys.path
    sys.path.insert(0, str(TRAIN_TESTS))

from robot_dataset import write_robot_dataset  # noqa: E402

SECTION = re.search(
    r"^## Train F1 on your own robot\n(.*?)^## ",
    (REPO_ROOT / "docs" / "training.md").read_text(),
    flags=re.S | re.M,
).group(1)
#: What the test changes in the documented `f1 train` commands: size only (a few steps of batch 2, 1 thread).
SHRINK = [
    "--no-progress",
    "--set",
    "train.steps=2",
    "--set",
    "train.batch_size=2",
    "--set",
    "threads=1",
    "--set",
    "device=cpu",
    "--set",
    "train.precision=fp32",
]


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"f1 {command}: error: ")
    return err[0]


def test_the_own_robot_section_runs_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```(python|yaml|bash)\n(.*?)```", SECTION, flags=re.S)
    assert [kind for kind, _ in blocks] == ["python", "yaml", "yaml", "yaml", "bash", "bash", "python"]
    commands = []
    for kind, text in blocks:
        if kind == "python":
            exec(compile(text, "docs/training.md", "exec"), {"__name__": "__docs__"})
        elif kind == "yaml":
            name = re.match(r"# (\S+\.yaml)\n", text).group(1)
            assert yaml.safe_load(text)["data"] == {"root": "data/my-robot"}
            Path(name).write_text(text)
        else:
            for line in text.strip().splitlines():
                argv = shlex.split(line)
                assert argv[0] == "f1"
                argv = argv[1:] + (SHRINK if argv[1] == "train" else [])
                assert main(argv) == 0, (line, capsys.readouterr().err)
                commands.append(argv[0])
    assert commands == ["train", "train", "train", "export", "export"]
    assert "(3,)" in capsys.readouterr().out  # the last block's print
    policy = F1Policy.load("runs/my-robot-policy")
    assert policy.config.embodiments[0].name == "my_arm"
    tokenizer = F1Policy.load("runs/my-robot-tokenizer/policy").model.generation.tokenizer.state_dict()
    final = policy.model.generation.tokenizer.state_dict()
    assert all(torch.equal(tokenizer[k], final[k]) for k in tokenizer)  # stages II/III kept the trained one
    # `f1 convert --base` takes the exported folder: the tokenizer of a VAR file goes into it
    vae = {k: v + 1 for k, v in tokenizer.items() if v.is_floating_point()}
    torch.save(vae, "vae.pth")
    assert (
        main(["convert", "vae.pth", "converted", "--from", "var_vqvae", "--base", "runs/my-robot-policy"])
        == 0
    )


def test_train_help_lists_every_shipped_recipe_with_its_header(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    configs = REPO_ROOT / "src" / "f1" / "f1" / "train" / "configs"
    for path in configs.glob("*.yaml"):
        header = path.read_text().splitlines()[0].lstrip("# ")
        assert path.stem in text
        assert " ".join(header.split()[:5]) in " ".join(text.split()), path.name
    assert "--train-minutes" in text
    assert "0 | tokenizer" in text


def test_train_minutes_stops_the_run_and_says_so(tmp_path: Path, capsys) -> None:
    write_robot_dataset(tmp_path / "data")
    run = tmp_path / "run.yaml"
    run.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "out"),
                "model": {"preset": "tiny"},
                "data": {"root": str(tmp_path / "data")},
            }
        )
    )
    argv = [
        "train",
        "--config",
        str(run),
        "--stage",
        "stage3_scratch",
        "--train-minutes",
        "0.005",
        *SHRINK,
        "--set",
        "train.steps=100000",
        "--set",
        "train.log_interval=1000",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert '"stopped_by_time_budget": true' in captured.out
    assert "the --train-minutes budget is spent: stopped at step" in captured.err
    assert (tmp_path / "out" / "policy" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--stage", "3", "--train-minutes", "0"],
            r"--train-minutes must be a finite number > 0, received 0.0",
        ),
        (
            ["--stage", "3", "--train-minutes", "nan"],
            r"--train-minutes must be a finite number > 0, received nan",
        ),
        (["--stage", "tokeniser"], r"received 'tokeniser' \(did you mean 'tokenizer'\?\)"),
        (
            [
                "--stage",
                "3",
                "--set",
                "model.overrides.embodiments=[{name: arm, state_dim: 8, action_dim: 7}]",
            ],
            r"embodiment 'arm' the run names expects state 8 and action 7, but the dataset .* holds state 4",
        ),
        (["--stage", "0", "--set", "model.overrides.mode=no_gen"], r"mode 'no_gen' has no VQ-VAE tokenizer"),
    ],
)
def test_bad_train_inputs_exit_2_with_one_line_and_write_nothing(
    tmp_path: Path, capsys, extra: list, message: str
) -> None:
    write_robot_dataset(tmp_path / "data")
    run = tmp_path / "run.yaml"
    run.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "out"),
                "model": {"preset": "tiny"},
                "data": {"root": str(tmp_path / "data")},
            }
        )
    )
    assert main(["train", "--config", str(run), *extra, "--set", "threads=1"]) == 2
    assert re.search(message, _one_line_error(capsys, "train"))
    assert not (tmp_path / "out").exists()


def test_bad_export_inputs_exit_2_with_one_line_and_write_nothing(tmp_path: Path, capsys) -> None:
    assert main(["export", str(tmp_path / "no-run"), str(tmp_path / "out")]) == 2
    assert "checkpoint path does not exist" in _one_line_error(capsys, "export")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "out"), "--checkpoint", "5"]) == 2
    assert "holds no checkpoint of step 5 (its checkpoints: steps none)" in _one_line_error(capsys, "export")
    (tmp_path / "file").write_text("x")
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "file")]) == 2
    assert "exists and is not a directory" in _one_line_error(capsys, "export")
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "file").read_text() == "x"
