"""Stage III on the arm, full fine-tune against LoRA, on the same budget (steps, batch, seed, learning rate).

The embedded table task of ``f1 demo`` (``f1.demo.DEMO_TASK``, 64 px) and the demo's F1 policy
(``f1.demo.policy.demo_policy_config``), built and trained with the library as the demo does it:

1. scripted-expert demonstrations of the point gripper and of the planar arm, static and conveyor variants
   (``f1.demo.record_demonstrations``, 10% DART perturbation);
2. the VQ-VAE tokenizer on the gripper frames (``f1.demo.training.train_tokenizer``), then the codes of
   every frame;
3. a base policy: stage II on the gripper demonstrations (``f1.demo.training.run_stage``, shipped stage II);
4. stage III on the arm twice from that base, with the same steps, batch, seed and learning rate: a full
   fine-tune (every group but the tokenizer trains) and LoRA (``lora: {rank, alpha}``: adapters on the
   attention and MLP projections of the experts, the embodiment adapters in full, everything else frozen).

Writes a JSON report (both loss curves, trainable parameter counts, seconds), a PNG of the curves, and prints
a table. The numbers are training losses of the logged steps (means over each log interval), not held-out
or closed-loop results.

Usage:
    python benchmarks/lora_stage3.py --out docs/results/lora_stage3.json --plot docs/results/lora_stage3.png
    python benchmarks/lora_stage3.py --quick --out /tmp/lora.json      # a toy-size check of the pipeline
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from f1.data import LeRobotDataset
from f1.demo import CAMERA, DEMO_TASK, record_demonstrations
from f1.demo.policy import demo_policy_config, embodiment_from_stats
from f1.demo.training import StagePlan, dataset_codes, frame_tokenizer, run_stage, train_tokenizer
from f1.envs import EMBODIMENTS, VARIANTS
from f1.keys import camera_key
from f1.model import F1Policy
from f1.train import load_stage_config, read_metrics
from f1.train.lora import ADAPTER_DIR, read_adapter

RUNS = ("full", "lora")
SIZES: dict[str, dict[str, int]] = {
    "default": {
        "gripper_episodes": 20,
        "arm_episodes": 10,
        "tokenizer_steps": 200,
        "stage2_steps": 300,
        "stage3_steps": 300,
        "batch": 8,
    },
    "quick": {
        "gripper_episodes": 2,
        "arm_episodes": 2,
        "tokenizer_steps": 5,
        "stage2_steps": 4,
        "stage3_steps": 6,
        "batch": 4,
    },
}


def _trainable_full(policy: F1Policy, stage: int) -> int:
    """Parameters a full fine-tune of ``stage`` trains: every group it does not freeze."""
    frozen = load_stage_config(stage).frozen
    groups = policy.model.parameter_groups()
    return sum(
        p.numel() for group, ps in groups.items() if group not in frozen for p in ps if p.requires_grad
    )


def _curve(run_dir: Path) -> list[dict[str, float]]:
    return [
        {
            "step": int(r["step"]),
            "loss": r["loss"],
            "flow": r.get("loss/flow"),
            "generation": r.get("loss/generation"),
        }
        for r in read_metrics(run_dir)
        if "loss" in r
    ]


def _tail_mean(curve: list[dict[str, float]], key: str, steps: int) -> float:
    """Mean of ``key`` over the logged records of the last ``steps`` steps."""
    last = curve[-1]["step"]
    values = [r[key] for r in curve if r["step"] > last - steps and r[key] is not None]
    return float(np.mean(values))


def _plot(runs: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, label in zip(
        axes, ("loss", "flow", "generation"), ("total (flow + 0.1 x gen)", "flow", "generation")
    ):
        for name, run in runs.items():
            curve = run["curve"]
            share = 100 * run["trainable_parameters"] / run["total_parameters"]
            ax.plot(
                [r["step"] for r in curve],
                [r[key] for r in curve],
                label=f"{name} ({share:.1f}% of weights train)",
            )
        ax.set_title(label)
        ax.set_xlabel("stage III step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss")
    axes[0].legend()
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default="runs/lora_stage3", help="demonstrations and runs (replaced)")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--plot", help="write the PNG of the loss curves here")
    parser.add_argument("--quick", action="store_true", help="toy sizes, to check the pipeline")
    parser.add_argument("--stage3-steps", type=int, help="override the stage III steps of both runs")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (the update is x alpha/rank)")
    parser.add_argument(
        "--lr", type=float, default=2e-3, help="peak learning rate of every stage (the demo's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = dict(SIZES["quick" if args.quick else "default"])
    if args.stage3_steps is not None:
        sizes["stage3_steps"] = args.stage3_steps
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    clock = time.perf_counter()
    episodes = {"gripper": sizes["gripper_episodes"], "arm": sizes["arm_episodes"]}
    datasets = {}
    for name in EMBODIMENTS:
        recorded = record_demonstrations(
            work / "data" / name, DEMO_TASK, name, VARIANTS, episodes[name], perturbation=0.1
        )
        datasets[name] = LeRobotDataset(recorded.root)
    fps = float(datasets["gripper"].fps)
    embodiments = tuple(
        embodiment_from_stats(name, datasets[name].stats or datasets[name].compute_stats(), fps)
        for name in EMBODIMENTS
    )
    config = demo_policy_config("f1", int(DEMO_TASK["resolution"]), embodiments)
    seconds["demonstrations"] = time.perf_counter() - clock

    clock = time.perf_counter()
    torch.manual_seed(args.seed)
    policy = F1Policy(config)
    train_tokenizer(
        frame_tokenizer(policy),
        datasets["gripper"],
        camera_key(CAMERA),
        steps=sizes["tokenizer_steps"],
        batch_size=sizes["batch"],
        seed=args.seed,
    )
    codes = {name: dataset_codes(policy, dataset) for name, dataset in datasets.items()}
    seconds["tokenizer"] = time.perf_counter() - clock

    clock = time.perf_counter()
    plan2 = StagePlan(2, sizes["stage2_steps"], sizes["batch"], args.lr)
    run_stage(policy, datasets["gripper"], plan2, work / "stage2", seed=args.seed, codes=codes["gripper"])
    seconds["stage2"] = time.perf_counter() - clock
    base = work / "stage2" / "policy"

    lora = {"rank": args.rank, "alpha": args.alpha}
    runs: dict[str, dict[str, Any]] = {}
    for name in RUNS:
        start = F1Policy.load(base)
        total = sum(p.numel() for p in start.model.parameters())
        full_trainable = _trainable_full(start, 3)
        plan = StagePlan(
            3, sizes["stage3_steps"], sizes["batch"], args.lr, lora=lora if name == "lora" else None
        )
        clock = time.perf_counter()
        run_stage(start, datasets["arm"], plan, work / name, seed=args.seed, codes=codes["arm"])
        elapsed = time.perf_counter() - clock
        if name == "lora":
            adapter = read_adapter(work / name / ADAPTER_DIR)
            trainable = sum(t.numel() for t in adapter.tensors.values())
            extra = {
                "adapted_projections": len(adapter.modules),
                "fully_trained_tensors": len(adapter.full_parameters),
                "adapter_file_bytes": adapter.path.stat().st_size,
            }
        else:
            trainable, extra = full_trainable, {}
        curve = _curve(work / name)
        speeds = [r["steps_per_s"] for r in read_metrics(work / name) if "steps_per_s" in r]
        runs[name] = {
            "stage_overrides": plan.overrides(),
            "trainable_parameters": trainable,
            "total_parameters": total,
            "seconds": elapsed,
            "median_steps_per_s": float(np.median(speeds)),
            "curve": curve,
            "final": {key: _tail_mean(curve, key, 50) for key in ("loss", "flow", "generation")},
            **extra,
        }
        seconds[f"stage3_{name}"] = elapsed

    title = (
        f"stage III on the arm ({sizes['arm_episodes'] * 2} demos), {sizes['stage3_steps']} steps x batch "
        f"{sizes['batch']}: full fine-tune vs LoRA r={args.rank}"
    )
    if args.plot:
        _plot(runs, Path(args.plot), title)
    seconds["total"] = time.perf_counter() - started
    print(f"\n{title}")
    columns = ("run", "trainable parameters", "share", "seconds", "steps/s", "loss (last 50 steps)", "flow")
    print("| " + " | ".join([*columns, "generation"]) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        final = run["final"]
        print(
            f"| {name} | {run['trainable_parameters']:,} | "
            f"{100 * run['trainable_parameters'] / run['total_parameters']:.1f}% | {run['seconds']:.0f} | "
            f"{run['median_steps_per_s']:.2f} | {final['loss']:.4f} | {final['flow']:.4f} | "
            f"{final['generation']:.4f} |"
        )
    print(f"total {seconds['total']:.0f} s")
    report = {
        "benchmark": "lora_stage3",
        "command": " ".join(["python", *sys.argv]),
        "task": dict(DEMO_TASK),
        "sizes": sizes,
        "lr": args.lr,
        "seed": args.seed,
        "lora": lora,
        "threads": args.threads,
        "seconds": seconds,
        "runs": runs,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "commit": _commit(),
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
