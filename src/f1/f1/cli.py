"""The `f1` command line.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and sets ``handler``
to a function ``(args) -> exit code``; adding a subcommand means adding one such function to ``COMMANDS``.
Heavy imports (torch, the model) happen inside the handlers so that ``f1 --help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_USAGE = 2  # bad arguments, paths or configs: nothing ran
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as if the signal had ended the process (after a clean checkpoint)

Subparsers = Any  # argparse's _SubParsersAction is private


DEMO_DESCRIPTION = """\
The main job, in one command: record scripted-expert demonstrations of the embedded table tasks, train F1
(stage I and II on the point gripper, static + conveyor; stage III on the planar arm with at most 50
demonstrations) and, with the same budget, the controls No-Gen (no generation expert) and
History-No-Foresight (history frames, no foresight); evaluate all of them, the scripted expert and random
actions closed loop on held-out seeds; write report.md, report.json and the figures.

By default stages I and II are not trained here: every policy starts from the shipped stage-II
checkpoints (--pretrained, default pretrained/demo; made once by `f1 demo-pretrain` on the gripper's
demonstrations of training seeds), adds the arm and trains stage III on it. --from-scratch runs every
stage in the run.

The full run takes 20 to 25 minutes on 2 CPU cores; --quick runs the same pipeline at toy size (about a
minute, from scratch unless --pretrained names checkpoints made with `f1 demo-pretrain --quick`) to check
that everything works.
"""

DEMO_PRETRAIN_DESCRIPTION = """\
Train the demo's stages I-II once, for the checkpoints `f1 demo` starts from: record the point gripper's
demonstrations (static + conveyor, training seeds), train the VQ-VAE tokenizer on them, train F1 through
stages I and II and the controls No-Gen and History-No-Foresight through the same stage-II steps, and write
the stage-II policies, their training curves and a manifest to --out (replaced in one rename at the end).

The full budget's steps take a few hours on 2 CPU cores; --quick trains toy-size checkpoints in seconds.
"""


def _add_demo(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: data, training of F1 and its controls, closed-loop evaluation, report",
        description=DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="toy-size run (about a minute)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), metavar="DIR", help="report directory (runs/demo)"
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--pretrained",
        type=Path,
        metavar="DIR",
        help="stage-II checkpoints to start stage III from (default: pretrained/demo; --quick: none)",
    )
    start.add_argument(
        "--from-scratch", action="store_true", help="train every stage in the run (no checkpoints)"
    )
    parser.add_argument(
        "--train-minutes",
        type=float,
        metavar="M",
        help="wall-clock budget for training the three policies (full run: 12 for stage III from the "
        "checkpoints, 9 for every stage from scratch); more trains longer",
    )
    _add_training_run_options(parser)
    parser.set_defaults(handler=_run_demo)


def _add_training_run_options(parser: argparse.ArgumentParser) -> None:
    """The options ``f1 demo`` and ``f1 demo-pretrain`` share: seed, threads, workers, progress bars."""
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and sampling")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per process (1 is fastest on a busy 2-core CPU)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes training the three policies side by side (default: one per core, at most 3)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _training_run_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the options of :func:`_add_training_run_options` (None: nothing)."""
    for flag, value in (("--threads", args.threads), ("--workers", args.workers)):
        if value is not None and value < 1:
            return f"{flag} must be >= 1, received {value}"
    if args.seed < 0:
        return f"--seed must be >= 0, received {args.seed}"
    return None


def _run_demo(args: argparse.Namespace) -> int:
    error = _training_run_error(args)
    if error is not None:
        print(f"f1 demo: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.out.exists() and not args.out.is_dir():
        print(f"f1 demo: error: --out {args.out} exists and is not a directory", file=sys.stderr)
        return EXIT_USAGE
    if args.train_minutes is not None and not (0 < args.train_minutes < math.inf):
        print(
            f"f1 demo: error: --train-minutes must be a finite number > 0, received {args.train_minutes}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from dataclasses import replace

    from f1.demo import DEMO_BUDGETS, run_demo
    from f1.eval import read_report, success_table

    budget = DEMO_BUDGETS["quick" if args.quick else "full"]
    if args.train_minutes is not None:
        budget = replace(
            budget,
            train_seconds=60 * args.train_minutes,
            adaptation_seconds=60 * args.train_minutes,
            max_steps=max(budget.max_steps, 100_000),
        )
    checkpoints = args.pretrained
    if checkpoints is None and not args.from_scratch and not args.quick:
        checkpoints = Path("pretrained/demo")
    pretrained = None
    if checkpoints is not None:
        from f1.demo import load_pretrained

        try:
            pretrained = load_pretrained(checkpoints, budget)  # checked before the run touches anything
        except ValueError as error:
            print(f"f1 demo: error: {error}", file=sys.stderr)
            return EXIT_USAGE
    try:
        result = run_demo(
            args.out,
            budget,
            pretrained=pretrained,
            seed=args.seed,
            progress=not args.no_progress,
            threads=args.threads,
            workers=args.workers,
        )
    except KeyboardInterrupt:
        print("f1 demo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    report = read_report(result.files["report_json"])
    print(success_table(report["cells"]))
    print(f"wall time {report['wall_time_s'] / 60:.1f} min; report: {result.files['report_md']}")
    return 0


def _add_demo_pretrain(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo-pretrain",
        help="train the demo's stages I-II once, for the checkpoints `f1 demo` starts from",
        description=DEMO_PRETRAIN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="toy-size checkpoints (seconds)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("pretrained/demo"),
        metavar="DIR",
        help="the pretrained directory to write (pretrained/demo)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        metavar="DIR",
        help="demonstrations and training runs (default: runs/demo-pretrain)",
    )
    _add_training_run_options(parser)
    parser.set_defaults(handler=_run_demo_pretrain)


def _run_demo_pretrain(args: argparse.Namespace) -> int:
    error = _training_run_error(args)
    if error is not None:
        print(f"f1 demo-pretrain: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    for flag, path in (("--out", args.out), ("--work", args.work)):
        if path is not None and path.exists() and not path.is_dir():
            print(f"f1 demo-pretrain: error: {flag} {path} exists and is not a directory", file=sys.stderr)
            return EXIT_USAGE
    if args.work is not None and args.work.resolve() == args.out.resolve():
        print("f1 demo-pretrain: error: --work must differ from --out", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from f1.demo import pretrain_demo

    try:
        pretrained = pretrain_demo(
            args.out,
            "quick" if args.quick else "full",
            work_dir=args.work,
            seed=args.seed,
            progress=not args.no_progress,
            threads=args.threads,
            workers=args.workers,
        )
    except KeyboardInterrupt:
        print("f1 demo-pretrain: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    hours = pretrained.manifest["wall_time_s"] / 3600
    print(f"pretrained checkpoints: {pretrained.directory} ({hours:.2f} h)")
    return 0


EVAL_DESCRIPTION = """\
Run a policy closed loop on held-out seeds and report its success rate with the Wilson 95% interval.

Table tasks (--embodiment, --variant): one cell, printed as one JSON line.
Your own simulator (--env module:factory, any gymnasium environment): the policy and the baselines
(--baseline random, --baseline mean-action) on the same seeds, printed as a table (--out: JSON). An
adapter file (--adapter, YAML or JSON) or the flags below say which observation key is which camera's
image, which is the state, where the instruction comes from and which info key reports success:

  embodiment: my_robot         # the policy's name for this robot (default: its only one)
  cameras: {front: pixels}     # policy camera -> observation key (nested: pixels/top)
  state: agent_pos             # observation key of the state vector
  instruction: pick up the cube    # or instruction_key: <observation key of the text>
  image_layout: HWC            # or CHW; uint8, or float in [0, 1]
  success_key: success         # info key; or success_reward: 1.0 (a step with reward >= 1 succeeds)
  clip_actions: true           # clip actions into the action space
  max_steps: 300               # default: the env's spec.max_episode_steps

An episode succeeds, and ends, at its first successful step. Seeds: by default the first --episodes (100)
seeds of the held-out 'test' split (2000000, 2000001, ...), disjoint from the training seeds (0..999999).
"""

EVAL_EPILOG = """\
examples:
  f1 eval --policy runs/demo/work/runs/f1/stage_II/policy --embodiment gripper --variant dynamic
  f1 eval --policy expert --embodiment arm --variant static --episodes 200
  f1 eval --env my_sim:make_env --adapter adapter.yaml --policy runs/my-robot/policy \\
      --baseline random --baseline mean-action --dataset data/my-robot --seeds 50 --out eval.json
  f1 eval --env f1.envs.gymnasium_env:TableTaskGymEnv --env-arg resolution=32 --policy random \\
      --camera top=image --state-key state --instruction-key instruction
"""

BASELINES = ("random", "mean-action")
TABLE_ONLY = ("variant", "objects", "bins", "object_size", "grasp_radius", "belt_speed")
ENV_ONLY = ("adapter", "env_args", "cameras", "state_key", "instruction", "instruction_key", "image_layout")
ENV_ONLY += ("success_key", "success_reward", "max_steps", "baselines", "dataset", "action_stats")


def _parse_camera(text: str) -> tuple[str, str]:
    camera, sep, key = text.partition("=")
    if not sep or not camera.strip() or not key.strip():
        raise argparse.ArgumentTypeError(
            f"expected CAMERA=OBSERVATION_KEY (e.g. front=pixels), received {text!r}"
        )
    return camera.strip(), key.strip()


def _add_eval(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="closed-loop success rate (Wilson 95%% interval) on a table task or any gymnasium env",
        description=EVAL_DESCRIPTION,
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--policy",
        metavar="DIR|expert|random|mean-action",
        help="a policy directory saved by F1Policy.save, or 'expert' (table tasks), 'random', 'mean-action'",
    )
    parser.add_argument("--embodiment", help="table tasks: gripper or arm; --env: the policy's embodiment")
    parser.add_argument("--variant", choices=("static", "dynamic"), help="table tasks: static or dynamic")
    parser.add_argument("--episodes", type=int, default=None, help="held-out episodes (default 100)")
    parser.add_argument(
        "--seeds",
        metavar="N|A:B|a,b,c",
        help="seeds: the first N of --split, the range A..B-1 or a list (default: --episodes of --split)",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="episodes run in lockstep")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="seed split (test)")
    table = parser.add_argument_group("table tasks")
    table.add_argument("--resolution", type=int, default=None, help="image side in pixels (64)")
    table.add_argument("--objects", type=int, default=None, help="objects on the table (demo's default)")
    table.add_argument("--bins", type=int, default=None, help="target bins (demo's default)")
    table.add_argument(
        "--object-size", type=float, default=None, help="object side, table widths (demo's default)"
    )
    table.add_argument(
        "--grasp-radius", type=float, default=None, help="grasp radius, table widths (demo's default)"
    )
    table.add_argument(
        "--belt-speed",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="conveyor speed range of the dynamic variant, table widths per step (demo's default)",
    )
    env = parser.add_argument_group("your own simulator (gymnasium)")
    env.add_argument(
        "--env", metavar="MODULE:FACTORY", help="import MODULE, call FACTORY(**env-args) per env"
    )
    env.add_argument(
        "--env-arg",
        dest="env_args",
        type=_parse_set,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a keyword argument of the factory (YAML value; repeatable)",
    )
    env.add_argument(
        "--adapter", type=Path, metavar="FILE", help="observation/action/success mapping (YAML/JSON)"
    )
    env.add_argument(
        "--camera",
        dest="cameras",
        type=_parse_camera,
        action="append",
        default=[],
        metavar="CAMERA=KEY",
        help="the observation key of a policy camera's image (repeatable; adds to the adapter's)",
    )
    env.add_argument("--state-key", help="observation key of the state vector")
    env.add_argument("--instruction", help="a fixed instruction for every episode")
    env.add_argument("--instruction-key", help="observation key that holds the instruction")
    env.add_argument("--image-layout", choices=("HWC", "CHW"), help="image layout (HWC)")
    env.add_argument("--success-key", help="info key that reports success (success)")
    env.add_argument("--success-reward", type=float, help="a step with reward >= this succeeds")
    env.add_argument("--max-steps", type=int, help="steps per episode (the env's max_episode_steps)")
    env.add_argument("--no-clip", action="store_true", help="do not clip actions into the action space")
    env.add_argument(
        "--baseline",
        dest="baselines",
        choices=BASELINES,
        action="append",
        default=[],
        help="also evaluate this baseline on the same seeds (repeatable)",
    )
    env.add_argument(
        "--dataset", type=Path, metavar="ROOT", help="LeRobot dataset whose mean action mean-action replays"
    )
    env.add_argument("--action-stats", type=Path, metavar="STATS.json", help="or its stats.json")
    parser.add_argument("--out", type=Path, metavar="FILE.json", help="also write the result here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_eval)


def _eval_error(message: str) -> int:
    print(f"f1 eval: error: {message}", file=sys.stderr)
    return EXIT_USAGE


FLAG_OF = {"cameras": "--camera", "baselines": "--baseline", "env_args": "--env-arg"}


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """The flags among ``names`` (argparse destinations) that the command line set."""
    return [FLAG_OF.get(n, "--" + n.replace("_", "-")) for n in names if getattr(args, n) not in (None, [])]


def _eval_seeds(args: argparse.Namespace) -> list[int]:
    """The episode seeds of ``--seeds`` / ``--episodes`` / ``--split`` (ValueError naming the flag)."""
    from f1.envs import seed_range
    from f1.eval.gym_adapter import parse_seeds

    split = seed_range(args.split)
    if args.seeds is not None:
        if args.episodes is not None:
            raise ValueError("give --seeds or --episodes, not both")
        return parse_seeds(args.seeds, split[0])
    episodes = 100 if args.episodes is None else args.episodes
    if episodes > len(split):
        raise ValueError(
            f"--episodes must be at most the {len(split)} seeds of split {args.split!r}, received {episodes}"
        )
    return list(split[:episodes])


def _run_eval(args: argparse.Namespace) -> int:
    for name in ("episodes", "batch_size", "threads", "max_steps", "resolution"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return _eval_error(f"--{name.replace('_', '-')} must be >= 1, received {value}")
    if args.out is not None and (args.out.is_dir() or (args.out.exists() and not args.out.is_file())):
        return _eval_error(f"--out {args.out} is a directory; give the path of the JSON file to write")
    try:
        seeds = _eval_seeds(args)
    except ValueError as error:
        return _eval_error(str(error))
    if args.env is not None:
        wrong = _given(args, TABLE_ONLY) + (["--resolution"] if args.resolution is not None else [])
        if wrong:
            return _eval_error(
                f"{', '.join(wrong)} describe the table tasks; with --env pass --env-arg KEY=VALUE"
            )
        return _run_env_eval(args, seeds)
    wrong = _given(args, ENV_ONLY) + (["--no-clip"] if args.no_clip else [])
    if wrong:
        return _eval_error(f"{', '.join(wrong)} need --env MODULE:FACTORY")
    return _run_table_eval(args, seeds)


def _run_table_eval(args: argparse.Namespace, seeds: list[int]) -> int:
    import json

    import torch

    from f1.demo import DEMO_TASK, table_task, task_record
    from f1.envs import TableTaskEnv
    from f1.eval import POLICIES, Cell, evaluate, load_agent

    for flag, value, choices in (
        ("--policy", args.policy, None),
        ("--embodiment", args.embodiment, ("gripper", "arm")),
        ("--variant", args.variant, ("static", "dynamic")),
    ):
        if value is None:
            return _eval_error(f"{flag} is required for a table task (or give --env MODULE:FACTORY)")
        if choices is not None and value not in choices:
            return _eval_error(f"{flag}: expected one of {list(choices)}, received {value!r}")
    task = {**DEMO_TASK, "resolution": 64 if args.resolution is None else args.resolution}
    for key, value in (
        ("num_objects", args.objects),
        ("num_bins", args.bins),
        ("object_size", args.object_size),
        ("grasp_radius", args.grasp_radius),
        ("conveyor_speed_range", args.belt_speed),
    ):
        if value is not None:
            task[key] = value
    try:
        config = table_task(task, args.embodiment, args.variant)  # validates the task before loading anything
        agent = load_agent(args.policy, args.embodiment)
    except Exception as error:  # bad arguments, unreadable or foreign policy files
        return _eval_error(str(error))
    torch.set_num_threads(args.threads)
    result = evaluate(
        agent,
        lambda: TableTaskEnv(config),
        seeds,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    policy = agent.name if agent.name in POLICIES else "f1"
    cell = Cell.from_result(result, policy, args.variant, args.embodiment).to_dict()
    cell["policy_path"] = args.policy
    cell["task"] = task_record(task)
    cell["split"] = args.split
    line = json.dumps(cell)
    print(line)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(cell, indent=2) + "\n")
    return 0


def _run_env_eval(args: argparse.Namespace, seeds: list[int]) -> int:
    import json
    import time

    import torch

    from f1.errors import CheckpointError
    from f1.eval import MeanActionAgent, RandomAgent, evaluate
    from f1.eval.gym_adapter import GymAdapter, load_env_factory, results_table
    from f1.model import F1Policy

    names = ([args.policy] if args.policy is not None else []) + args.baselines
    if not names:
        return _eval_error("give --policy DIR and/or --baseline random|mean-action")
    if len(set(names)) != len(names):
        return _eval_error(f"each policy once, received {names}")
    if "expert" in names:
        return _eval_error(
            "--policy expert exists only for the table tasks (it reads their privileged state)"
        )
    if "mean-action" in names and (args.dataset is None) == (args.action_stats is None):
        return _eval_error(
            "mean-action replays a dataset's mean action: give --dataset ROOT or --action-stats FILE"
        )
    try:
        adapter = GymAdapter.from_file(args.adapter) if args.adapter is not None else GymAdapter()
        adapter = adapter.with_overrides(
            cameras={**adapter.cameras, **dict(args.cameras)},
            state=args.state_key,
            embodiment=args.embodiment,
            instruction=args.instruction,
            instruction_key=args.instruction_key,
            image_layout=args.image_layout,
            success_key=args.success_key,
            success_reward=args.success_reward,
            max_steps=args.max_steps,
            clip_actions=False if args.no_clip else None,
        )
        env_factory = load_env_factory(args.env, dict(args.env_args))
        agents: list[tuple[str, Any]] = []
        for name in names:
            if name == "random":
                agents.append((name, RandomAgent()))
            elif name == "mean-action":
                agent = (
                    MeanActionAgent.from_dataset(args.dataset)
                    if args.dataset is not None
                    else MeanActionAgent.from_stats(args.action_stats)
                )
                agents.append((name, agent))
            else:
                if not Path(name).exists():
                    raise ValueError(f"--policy: expected a saved policy directory, {name!r} does not exist")
                agents.append((name, F1Policy.load(name).eval()))
    except (ValueError, CheckpointError) as error:
        return _eval_error(str(error))
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = []
    for name, agent in agents:
        try:
            result = evaluate(
                agent,
                env_factory,
                seeds,
                adapter=adapter,
                batch_size=args.batch_size,
                progress=not args.no_progress,
            )
        except ValueError as error:  # a key, shape or success signal that does not fit (checked first)
            return _eval_error(str(error))
        row = {k: v for k, v in result.to_dict().items() if k != "grasp_rate"}
        if name not in BASELINES:
            row["policy_path"] = name
        rows.append(row)
    report = {
        "env": args.env,
        "env_args": dict(args.env_args),
        "adapter": adapter.to_dict(),
        "seeds": {"count": len(seeds), "first": seeds[0], "last": seeds[-1]},
        "results": rows,
        "wall_time_s": time.perf_counter() - started,
    }
    print(results_table(rows))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


TRAIN_DESCRIPTION = """\
Train the policy through one stage of F1 (or a stage YAML of your own). --stage takes a number (0 = the
tokenizer, 1, 2, 3), the name of a shipped recipe, or a path:

{recipes}
The run file (--config) says which policy and data to build, where outputs go, and what to change in the
stage recipe:

  output_dir: runs/my-robot-stage3              # metrics.jsonl, checkpoints/, policy/, run.yaml, stage.yaml
  model: {{preset: tiny}}                         # F1Config preset (or config_file), overrides
  data:  {{root: data/my-robot}}                  # a LeRobot dataset (v3.0 or v2.1)
  init_from: runs/my-robot-stage2               # optional: start from the weights of an earlier stage
  train: {{steps: 2000, batch_size: 32}}          # optional: overrides of the stage recipe
  num_workers: 2                                # optional: data-loading processes per trainer process
  device: auto                                  # optional: auto (CUDA when available), cpu or cuda
  find_unused_parameters: false                 # optional: true if a batch may lack one of the embodiments
  threads: 1                                    # optional: torch threads per process (1: best on busy CPUs)

With one dataset (data.root) and a model section that names no embodiment, the policy's embodiment is
built from the dataset: state/action dims and names, normalization statistics (meta/stats.json), control
rate (fps), name (robot_type). An embodiment the run names is checked against the dataset instead.

Checkpoints are written atomically every `checkpoint_interval` steps and at the end; --resume continues
exactly where the last one left off. The run ends by writing output_dir/policy (an F1Policy.save folder;
`f1 export` makes one of any checkpoint). For several processes (GPUs, or CPU processes with gloo), launch
with torchrun; `batch_size` is the global batch, split over the processes.
"""


def _shipped_recipes() -> str:
    """One line per shipped stage file: its name and the first line of its header (read from the files,
    without importing torch, so that --help stays instant)."""
    numbers = {"tokenizer": "0", "stage1": "1", "stage2": "2", "stage3": "3"}  # f1.train.config.STAGE_NUMBERS
    lines = []
    for path in sorted((Path(__file__).parent / "train" / "configs").glob("*.yaml")):
        header = next((line for line in path.read_text().splitlines() if line.startswith("#")), "#")
        name = f"{numbers[path.stem]} | {path.stem}" if path.stem in numbers else path.stem
        lines.append(f"  {name:<18} {header.lstrip('# ').strip()}")
    return "\n".join(lines) + "\n"


TRAIN_EPILOG = """\
examples:
  f1 train --stage 3 --print-config                          show the shipped stage-III recipe
  f1 train --config run.yaml --stage tokenizer               train the VQ-VAE on the dataset's frames
  f1 train --config run.yaml --stage stage3_scratch --train-minutes 30   a 30-minute run from scratch
  f1 train --config run.yaml --stage 3                       train
  f1 train --config run.yaml --stage 3 --set train.steps=50  change one value from the command line
  f1 train --config run.yaml --stage 3 --resume              continue after an interruption
  torchrun --nproc_per_node=2 -m f1.cli train --config run.yaml --stage 2   two processes
"""


def _add_train(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a stage (0 = tokenizer, 1, 2, 3, or a recipe) from a run file; resumable, torchrun",
        description=TRAIN_DESCRIPTION.format(recipes=_shipped_recipes()),
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, metavar="RUN.yaml", help="run file (see above)")
    parser.add_argument(
        "--stage",
        required=True,
        metavar="{0,1,2,3,NAME,STAGE.yaml}",
        help="shipped stage number or recipe name (listed above), or the path of a stage YAML of your own",
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
    parser.add_argument(
        "--train-minutes",
        type=float,
        metavar="M",
        help="wall-clock budget of training: the step that passes M minutes is the last; it is checkpointed, "
        "the policy written and the stop logged (metrics: time_budget_reached); --resume continues",
    )
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


def _parse_stage(text: str) -> int | str | Path:
    """A stage number, a shipped recipe name, or the path of a stage YAML."""
    from f1.train.config import shipped_stage_names

    if text.isdigit():
        return int(text)
    if text in shipped_stage_names() or not (Path(text).suffix or Path(text).exists()):
        return text  # a shipped name (a misspelt one is refused with a suggestion)
    return Path(text)


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
        if args.train_minutes is not None and not (0 < args.train_minutes < math.inf):
            raise ConfigError(f"--train-minutes must be a finite number > 0, received {args.train_minutes}")
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
            run,
            stage,
            resume=args.resume,
            stop_at_step=args.stop_at_step,
            progress=not args.no_progress,
            time_budget_s=None if args.train_minutes is None else 60 * args.train_minutes,
        )
    except (ConfigError, CheckpointError) as error:  # raised by the checks before training starts
        return _usage_error(error)
    except KeyboardInterrupt:
        print("f1 train: interrupted; the last checkpoint is intact, continue with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.is_main:
        print(summarize(result))
    if result.stopped_by_time_budget and result.is_main:
        print(
            f"f1 train: the --train-minutes budget is spent: stopped at step {result.step} with a checkpoint "
            "and the policy; continue with --resume",
            file=sys.stderr,
        )
    if result.stopped_by_signal:
        print(f"f1 train: stopped by SIGTERM at step {result.step}; continue with --resume", file=sys.stderr)
        return EXIT_TERMINATED
    return 0


def _usage_error(error: Exception) -> int:
    print(f"f1 train: error: {error}", file=sys.stderr)
    return EXIT_USAGE


EXPORT_EPILOG = """\
examples:
  f1 export runs/my-robot-stage3 runs/my-robot-policy                  the latest checkpoint
  f1 export runs/my-robot-stage3 runs/my-robot-policy --checkpoint 2000
  f1 export runs/my-robot-stage3/checkpoints/step_00002000 runs/my-robot-policy

The output folder is what F1Policy.load, f1 eval --policy and f1 convert --base read. A non-empty output
folder is never replaced without --force; nothing is written when the checkpoint does not load.
"""


def _add_export(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="make a policy folder (F1Policy.save) of a training run's checkpoint",
        description="Read a checkpoint of an `f1 train` run (tensors only), rebuild the F1 policy it trained "
        "from the config stored with it, and save it as a policy folder (model.safetensors + config.json).",
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run", type=Path, metavar="RUN", help="a run directory (output_dir) or one checkpoint"
    )
    parser.add_argument("output", type=Path, metavar="OUT", help="the policy folder to write")
    parser.add_argument(
        "--checkpoint", type=int, metavar="STEP", help="the checkpoint of this step (default: the latest)"
    )
    parser.add_argument("--force", action="store_true", help="replace the policy in a non-empty OUT")
    parser.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from f1.train import CheckpointError, ConfigError, export_policy

    try:
        written = export_policy(args.run, args.output, step=args.checkpoint, overwrite=args.force)
    except (CheckpointError, ConfigError) as error:
        print(f"f1 export: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {written}")
    return 0


CONVERT_EPILOG = """\
examples:
  f1 convert lerobot_pi0/model.safetensors runs/pi0 --from pi0
  f1 convert pi0/model.safetensors runs/pi0 --from pi0 --preset pi0 --embodiment my_robot
  f1 convert F1-VLA/model.safetensors runs/f1-imported --from f1 --preset f1-4.2b
  f1 convert vae_ch160v4096z32.pth runs/with-var --from var_vqvae --base runs/f1-imported --force
  f1 convert --merge-lora runs/lora/adapter --base runs/stage2/policy runs/lora-merged

--from pi0 without --preset reads the policy's shape from the checkpoint (trunk, SigLIP tower, vocabulary,
state/action dims) and from LeRobot's config.json beside it (cameras, chunk size, flow steps); the other
sources default to --preset f1-4.2b. --mode and --set KEY=VALUE (repeatable; dotted keys of the policy
config, YAML values) adjust the shape, e.g. --set vision.heads=4 --set action.n_action_steps=5.

Every source key is either loaded, dropped with a stated reason, or reported as an error before anything
is written; nothing is downloaded and files are read as tensors only (never unpickled code). A non-empty
output directory is never replaced without --force.

--merge-lora ADAPTER_DIR (the adapter/ folder of a LoRA run of f1 train) merges the adapters into the policy
folder --base they were trained from (W + alpha/rank * B A; a base of another config or other weights is
refused) and writes a plain policy folder; it takes no SOURCE, --from, --preset, --mode, --set or
--embodiment. Merging needs peft (pip install 'f1[lora]').
"""


SOURCE_FORMATS = ("f1", "pi0", "paligemma", "var_vqvae")  # f1.model.weight_import.SOURCE_FORMATS (tested)


def _parse_set(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--set``: a dotted config key and a YAML value (``10``, ``true``, ``[a, b]``)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. vision.heads=4), received {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"{key}: the value {value!r} is not valid YAML ({err})") from None


def _add_convert(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="import published weights (F1, LeRobot pi0, PaliGemma, VAR VQ-VAE) into an f1 checkpoint",
        description="Read a published checkpoint from a local file, import it into an F1 policy whose shape "
        "is read from the file (pi0) or given by a preset, and save the result as an f1 policy directory "
        "(F1Policy.load, f1 eval and f1 bench read it).",
        epilog=CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        type=Path,
        nargs="?",
        help="the published file (model.safetensors or vae_*.pth); none with --merge-lora",
    )
    parser.add_argument("output", type=Path, help="directory for the f1 checkpoint")
    parser.add_argument(
        "--from", dest="source_format", choices=SOURCE_FORMATS, help="the source's format (required)"
    )
    parser.add_argument(
        "--merge-lora",
        type=Path,
        metavar="ADAPTER_DIR",
        help="merge these LoRA adapters (a LoRA run's adapter/) into the policy folder --base",
    )
    parser.add_argument(
        "--preset",
        help="policy shape to import into (default: read from the file for pi0, f1-4.2b otherwise)",
    )
    parser.add_argument(
        "--mode", help="the policy's mode, e.g. no_gen (pi0's default) or f1; others are refused by name"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        type=_parse_set,
        action="append",
        default=[],
        help="override one config value (repeatable)",
    )
    parser.add_argument("--embodiment", help="embodiment adapter that receives the action heads")
    parser.add_argument(
        "--base",
        type=Path,
        help="an f1 checkpoint to start from instead of the preset (with --merge-lora: the adapters' base)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace the checkpoint in a non-empty output directory"
    )
    parser.set_defaults(handler=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from f1.model import CheckpointError, ConfigError, convert_checkpoint, preset

    def fail(message: str) -> int:
        print(f"f1 convert: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    if args.merge_lora is not None:
        return _merge_lora(args, fail)
    if args.source is None:
        return fail("SOURCE is required: the published file to import (or --merge-lora ADAPTER_DIR)")
    if args.source_format is None:
        return fail(f"--from is required: the format of {args.source} (one of {', '.join(SOURCE_FORMATS)})")
    if not args.source.is_file():
        return fail(f"source: no such file {args.source}")
    if args.base is not None and not args.base.exists():
        return fail(f"--base: no such checkpoint {args.base}")
    if args.base is not None and (args.preset or args.mode or args.overrides):
        return fail("--base fixes the policy's shape; it takes no --preset, --mode or --set")
    overrides = dict(args.overrides)
    if args.mode is not None:
        overrides["mode"] = args.mode
    try:
        config = preset(args.preset) if args.preset is not None else None
        if config is None and args.base is None and args.source_format != "pi0":
            config = preset("f1-4.2b")
        report = convert_checkpoint(
            args.source,
            args.output,
            source=args.source_format,
            config=config,
            embodiment=args.embodiment,
            base=args.base,
            overrides=overrides,
            overwrite=args.force,
        )
    except (CheckpointError, ConfigError, KeyError) as error:
        return fail(str(error))
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


def _merge_lora(args: argparse.Namespace, fail: Callable[[str], int]) -> int:
    """``f1 convert --merge-lora ADAPTER_DIR --base POLICY_DIR OUT``."""
    from f1.errors import CheckpointError, ConfigError

    given = [
        flag
        for flag, value in (
            ("SOURCE", args.source),
            ("--from", args.source_format),
            ("--preset", args.preset),
            ("--mode", args.mode),
            ("--set", args.overrides),
            ("--embodiment", args.embodiment),
        )
        if value
    ]
    if given:
        usage = "f1 convert --merge-lora ADAPTER_DIR --base POLICY_DIR OUT"
        return fail(f"--merge-lora takes no {', '.join(given)}: {usage}")
    if args.base is None:
        return fail("--merge-lora needs --base POLICY_DIR, the policy folder the adapters were trained from")
    if not args.merge_lora.is_dir():
        return fail(f"--merge-lora: no such adapter folder {args.merge_lora}")
    if not args.base.exists():
        return fail(f"--base: no such policy folder {args.base}")
    try:
        from f1.train.lora import merge_adapter, read_adapter

        adapter = read_adapter(args.merge_lora)
        merge_adapter(adapter, args.base, args.output, overwrite=args.force)
    except (CheckpointError, ConfigError) as error:
        return fail(str(error))
    settings = adapter.settings
    print(
        f"merged {len(adapter.modules)} LoRA-adapted projections (rank {settings.rank}, alpha "
        f"{settings.alpha:g}) and {len(adapter.full_parameters)} fully trained tensors into {args.base}"
    )
    print(f"wrote {args.output}")
    return 0


def _add_bench(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="per-module inference latency, cached vs recomputed speedup, parameters and FLOPs per preset",
        description="F1 policy benchmark: per-module latency of one `plan` call, cached vs recomputed "
        "inference, a training step, parameters and FLOPs per preset. Prints a table and writes JSON.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/bench/f1_bench.json"), help="JSON file to write"
    )
    parser.add_argument("--presets", nargs="*", default=["tiny", "small"], help="presets timed here")
    parser.add_argument(
        "--policy",
        type=Path,
        action="append",
        metavar="DIR",
        help="also time a saved policy directory, e.g. f1 convert's output (repeatable)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (shared CPU: 1)")
    parser.add_argument("--train-batch", type=int, default=8, help="batch of the timed training step")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu or cuda (f1-4.2b: cuda only)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time each preset after F1Policy.compile (torch.compile; the first call compiles)",
    )
    parser.add_argument(
        "--compile-mode",
        default=None,
        help="torch.compile mode with --compile: default, reduce-overhead (CUDA graphs), max-autotune, "
        "max-autotune-no-cudagraphs",
    )
    parser.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from f1.eval.policy_benchmark import run

    try:
        return run(args)
    except ValueError as error:
        print(f"f1 bench: error: {error}", file=sys.stderr)
        return EXIT_USAGE


PLAN_MEMORY_EPILOG = """\
examples:
  f1 plan-memory --preset f1-4.2b --strategy ddp --world-size 1 --batch-size 32 --generation-scales 4
  f1 plan-memory --preset f1-4.2b --strategy fsdp --world-size 8 --batch-size 32 --checkpointing
  f1 plan-memory --preset pi0 --strategy ddp --world-size 1 --batch-size 32 --lora 16 --json plan.json

Parameters are counted on the meta device; activations are measured on one training forward of the tiny
preset on this CPU (a few seconds) and scaled by the formula the command prints. docs/training.md explains.
"""


def _add_plan_memory(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "plan-memory",
        help="per-rank training memory (parameters, gradients, optimizer, activations) under DDP or FSDP",
        description="Bytes per rank of one training step: parameters, gradients and AdamW state counted on "
        "the meta device, activations measured on a small model and scaled, and the peak over the step's "
        "phases. Prints a table in GiB per rank with every formula.",
        epilog=PLAN_MEMORY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", help="the model shape: tiny, small, f1-4.2b, pi0")
    parser.add_argument("--strategy", default="ddp", help="ddp or fsdp (ddp)")
    parser.add_argument("--world-size", default="1", metavar="N", help="ranks, one GPU each (1)")
    parser.add_argument("--batch-size", default="8", metavar="B", help="samples per rank per forward (8)")
    parser.add_argument("--lora", metavar="R", help="LoRA rank on the experts' projections (none: full)")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing per MoT layer")
    parser.add_argument("--precision", default="bf16", help="bf16 or fp32 (bf16)")
    parser.add_argument(
        "--generation-scales", metavar="K", help="scales teacher-forced (stages II/III: 4; default all)"
    )
    parser.add_argument(
        "--trainable", action="append", metavar="GROUP", help="a parameter group that trains (repeatable)"
    )
    parser.add_argument(
        "--cached-frame-codes", action="store_true", help="frames arrive as tokenizer codes (no encoding)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the plan as JSON")
    parser.set_defaults(handler=_run_plan_memory)


def _run_plan_memory(args: argparse.Namespace) -> int:
    from f1.errors import ConfigError
    from f1.train.memory_plan import run_command

    try:
        return run_command(args)
    except ConfigError as error:
        print(f"f1 plan-memory: error: {error}", file=sys.stderr)
        return EXIT_USAGE


SERVE_EPILOG = """\
examples:
  f1 serve runs/my-robot-policy                        ws://127.0.0.1:8000, this machine only
  f1 serve runs/my-robot-policy --host 0.0.0.0 --port 8000 --device cuda

Clients: openpi-client's WebsocketClientPolicy (pip install openpi-client --no-deps). The request and
reply keys, the two modes (a whole chunk, or one action of a server-side episode) and the errors:
docs/deployment.md. Needs the serve extra: pip install 'f1[serve]'.
"""


def _add_serve(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a policy over websockets to openpi-client (msgpack-numpy), chunks or single actions",
        description="Load a policy directory (F1Policy.save, f1 export, f1 convert) and serve it over "
        "websockets with openpi-client's protocol until Ctrl-C or SIGTERM.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("policy", type=Path, metavar="POLICY_DIR", help="the policy directory to serve")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    parser.add_argument("--port", default="8000", help="TCP port (8000; 0: any free port, printed)")
    parser.add_argument(
        "--max-message-mb", default="8", metavar="N", help="largest request accepted, MiB (8)"
    )
    parser.add_argument("--device", default="cpu", help="torch device of the model (cpu)")
    parser.set_defaults(handler=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    try:
        from f1.serve.command import run

        return run(args)
    except (ImportError, ValueError) as error:  # missing extra; bad arguments (f1's errors are ValueErrors)
        print(f"f1 serve: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_demo,
    _add_demo_pretrain,
    _add_train,
    _add_export,
    _add_eval,
    _add_convert,
    _add_bench,
    _add_plan_memory,
    _add_serve,
)


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
