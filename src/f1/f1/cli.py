"""The `f1` command line.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and sets ``handler``
to a function ``(args) -> exit code``; adding a subcommand means adding one such function to ``COMMANDS``.
Heavy imports (torch, the model) happen inside the handlers so that ``f1 --help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_USAGE = 2  # bad arguments, paths or configs: nothing ran
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as if the signal had ended the process (after a clean checkpoint)

Subparsers = Any  # argparse's _SubParsersAction is private


def _add_demo(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the main job")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    print("f1 demo: not built yet.", file=sys.stderr)
    return 2


TRAIN_DESCRIPTION = """\
Train the policy through one of the three F1 stages (or a stage YAML of your own).

  stage 1  foresight pre-training: only the generation expert learns (next-scale token cross-entropy)
  stage 2  pre-training: everything but the VQ-VAE learns (flow loss + 0.1 x generation loss, 4 scales)
  stage 3  post-training on your robot: same losses as stage 2

The run file (--config) says which policy and data to build, where outputs go, and what to change in the
stage recipe:

  output_dir: runs/my-robot-stage3              # metrics.jsonl, checkpoints/, run.yaml, stage.yaml
  model: {preset: tiny}                         # F1Config preset (or config_file), overrides
  data:  {root: data/my-robot}                  # a LeRobot dataset (v3.0 or v2.1)
  init_from: runs/my-robot-stage2               # optional: start from the weights of an earlier stage
  train: {steps: 2000, batch_size: 32}          # optional: overrides of the stage recipe
  num_workers: 2                                # optional: data-loading processes per trainer process
  device: auto                                  # optional: auto (CUDA when available), cpu or cuda
  find_unused_parameters: true                  # optional: false only if every parameter gets a gradient

Checkpoints are written atomically every `checkpoint_interval` steps and at the end; --resume continues
exactly where the last one left off. For several processes (GPUs, or CPU processes with gloo), launch
with torchrun; `batch_size` is the global batch, split over the processes.
"""

TRAIN_EPILOG = """\
examples:
  f1 train --stage 3 --print-config                          show the shipped stage-III recipe
  f1 train --config run.yaml --stage 3                       train
  f1 train --config run.yaml --stage 3 --set train.steps=50  change one value from the command line
  f1 train --config run.yaml --stage 3 --resume              continue after an interruption
  torchrun --nproc_per_node=2 -m f1.cli train --config run.yaml --stage 2   two processes
"""


def _add_train(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a stage (1, 2 or 3) from a run file; resumable, multi-process with torchrun",
        description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, metavar="RUN.yaml", help="run file (see above)")
    parser.add_argument(
        "--stage",
        required=True,
        metavar="{1,2,3,STAGE.yaml}",
        help="shipped stage number, or the path of a stage YAML of your own",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in output_dir (start fresh if there is none)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one value of the run file; dotted keys, YAML values (e.g. train.optimizer.lr=1e-4)",
    )
    parser.add_argument("--stop-at-step", type=int, metavar="N", help="stop (and checkpoint) after step N")
    parser.add_argument("--print-config", action="store_true", help="print the resolved configs and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in batch jobs)")
    parser.set_defaults(handler=_run_train)


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    import yaml

    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, received {pair!r}")
        overrides[key.strip()] = yaml.safe_load(text)
    return overrides


def _parse_stage(text: str) -> int | Path:
    return int(text) if text.isdigit() else Path(text)


def _run_train(args: argparse.Namespace) -> int:
    import yaml

    from f1.train import CheckpointError, ConfigError, RunConfig, load_stage_config, run_training
    from f1.train.run import summarize

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        overrides = _parse_overrides(args.overrides)
        stage = _parse_stage(args.stage)
        if args.stop_at_step is not None and args.stop_at_step < 0:
            raise ConfigError(f"--stop-at-step must be >= 0, received {args.stop_at_step}")
        if args.config is None:
            if not args.print_config:
                raise ConfigError("--config RUN.yaml is required (see `f1 train --help` for its contents)")
            print(load_stage_config(stage).to_yaml(), end="")
            return 0
        run = RunConfig.from_yaml(args.config, overrides)
        stage_config = load_stage_config(stage, run.train)
        if args.print_config:
            resolved = {"run": run.to_dict(), "stage": stage_config.to_dict()}
            print(yaml.safe_dump(resolved, sort_keys=False), end="")
            return 0
    except (ConfigError, ValueError) as error:
        return _usage_error(error)
    try:
        result = run_training(
            run, stage, resume=args.resume, stop_at_step=args.stop_at_step, progress=not args.no_progress
        )
    except (ConfigError, CheckpointError) as error:  # raised by the checks before training starts
        return _usage_error(error)
    except KeyboardInterrupt:
        print("f1 train: interrupted; the last checkpoint is intact, continue with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.is_main:
        print(summarize(result))
    if result.stopped_by_signal:
        print(f"f1 train: stopped by SIGTERM at step {result.step}; continue with --resume", file=sys.stderr)
        return EXIT_TERMINATED
    return 0


def _usage_error(error: Exception) -> int:
    print(f"f1 train: error: {error}", file=sys.stderr)
    return EXIT_USAGE


COMMANDS: tuple[Callable[[Subparsers], None], ...] = (_add_demo, _add_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="f1",
        description="F1 vision-language-action policy tools. `f1 COMMAND --help` explains each command.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
