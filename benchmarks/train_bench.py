"""Training throughput and memory: one process against 2-process DDP and 2-process FSDP2, on the CPU.

For each preset (tiny, small) and each setup, a fresh launch (``torchrun --nproc_per_node=2`` for the
2-process ones) builds the F1 model, wraps it as ``f1 train`` does (:class:`f1.train.Trainer` with
``distributed.strategy``), and times optimizer steps of stage III on one synthetic global batch (split over
the processes): ``samples/s = global batch x steps / seconds``. Every setup uses the same total number of CPU
threads (``--cores``, by default 2: one process with 2 threads, or 2 processes with 1 each), and also one
process with one thread. Setups alternate within each round and the median over rounds is reported, since
the host's speed drifts (compare ratios within one run). Peak memory per rank is the process's peak resident
set (``ru_maxrss``) and its growth over the resident set before the model was built.

    python benchmarks/train_bench.py --out runs/train_bench.json
    python benchmarks/train_bench.py --presets tiny --steps 10 --rounds 1   # a quick look

It prints a table and writes JSON with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETUPS: dict[str, dict[str, Any]] = {
    "1 process, 1 thread": {"processes": 1, "strategy": "ddp", "threads": 1},
    "1 process, all threads": {"processes": 1, "strategy": "ddp", "threads": None},
    "2 processes, DDP": {"processes": 2, "strategy": "ddp", "threads": None},
    "2 processes, FSDP2": {"processes": 2, "strategy": "fsdp", "threads": None},
}
BATCH = {"tiny": 16, "small": 8}


def _rss_mb() -> float:
    """The current resident set of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def worker(args: argparse.Namespace) -> None:
    """One process of one setup: build, wrap, time ``args.steps`` optimizer steps, write its result."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from f1.model import F1Model, preset
    from f1.train import Trainer, load_stage_config
    from f1.train.distributed import DistributedConfig, barrier, init_distributed
    from f1.train.memory_plan import training_batch

    context = init_distributed("cpu")
    config = preset(args.preset)
    per_rank = args.batch // context.world_size
    batch = training_batch(config, per_rank, seed=context.rank)
    baseline_mb = _rss_mb()
    torch.manual_seed(0)
    model = F1Model(config)
    stage = load_stage_config(3, {"steps": 10_000, "batch_size": args.batch, "precision": "fp32"})
    trainer = Trainer(
        model,
        [],
        stage,
        context=context,
        progress=False,
        distributed=DistributedConfig(strategy=args.strategy),
    )
    for _ in range(args.warmup):
        trainer.train_step(batch)
    barrier(context)
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(batch)
    barrier(context)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {
        "rank": context.rank,
        "world_size": context.world_size,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "steps": args.steps,
        "samples_per_s": args.batch * args.steps / seconds,
        "peak_rss_mb": peak_mb,
        "baseline_rss_mb": baseline_mb,
        "peak_growth_mb": peak_mb - baseline_mb,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    Path(f"{args.result}.{context.rank}").write_text(json.dumps(result))
    if context.is_distributed:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_setup(preset: str, setup: dict[str, Any], args: argparse.Namespace, folder: Path) -> list[dict]:
    """Launch one setup (1 or 2 processes) and return every rank's result."""
    threads = setup["threads"] or max(1, args.cores // setup["processes"])
    result = folder / f"{preset}-{setup['strategy']}-{setup['processes']}-{threads}"
    worker_args = [
        __file__,
        "--worker",
        "--preset",
        preset,
        "--strategy",
        setup["strategy"],
        "--batch",
        str(BATCH[preset] if args.batch is None else args.batch),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(threads),
        "--result",
        str(result),
    ]
    if setup["processes"] == 1:
        command = [sys.executable, *worker_args]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={setup['processes']}",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            *worker_args,
        ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{preset} {setup}: the benchmark process failed:\n{done.stderr[-3000:]}")
    return [json.loads(Path(f"{result}.{rank}").read_text()) for rank in range(setup["processes"])]


def machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per launch")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="launches of every setup (median reported)")
    parser.add_argument("--batch", type=int, default=None, help="global batch (default: tiny 16, small 8)")
    parser.add_argument("--cores", type=int, default=2, help="CPU threads every setup uses in all")
    parser.add_argument("--out", type=Path, default=Path("runs/train_bench.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    for name in ("steps", "rounds", "cores"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, received {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, received {args.warmup}")
    if args.batch is not None and (args.batch < 2 or args.batch % 2):
        parser.error(
            f"--batch must be an even number >= 2 (it splits over 2 processes), received {args.batch}"
        )
    unknown = [p for p in args.presets if p not in BATCH]
    if unknown:
        parser.error(f"--presets: expected among {list(BATCH)}, received {unknown}")

    runs: dict[str, dict[str, list[list[dict]]]] = {p: {name: [] for name in SETUPS} for p in args.presets}
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            for preset in args.presets:
                for name, setup in SETUPS.items():
                    print(f"round {round_index + 1}/{args.rounds}: {preset}, {name} ...", flush=True)
                    runs[preset][name].append(run_setup(preset, setup, args, Path(folder)))

    rows = []
    for preset in args.presets:
        reference = None
        for name, launches in runs[preset].items():
            speeds = [launch[0]["samples_per_s"] for launch in launches]  # all ranks time the same steps
            median = statistics.median(speeds)
            if name == "1 process, all threads":
                reference = median
            rows.append(
                {
                    "preset": preset,
                    "setup": name,
                    "batch": BATCH[preset] if args.batch is None else args.batch,
                    "samples_per_s": median,
                    "samples_per_s_each_round": speeds,
                    "peak_rss_mb_per_rank": max(r["peak_rss_mb"] for launch in launches for r in launch),
                    "peak_growth_mb_per_rank": max(
                        r["peak_growth_mb"] for launch in launches for r in launch
                    ),
                    "parameters": launches[0][0]["parameters"],
                    "threads_per_process": launches[0][0]["threads"],
                }
            )
        for row in rows:
            if row["preset"] == preset:
                row["speed_vs_one_process_all_threads"] = (
                    row["samples_per_s"] / reference if reference else None
                )

    columns = ("samples/s", "x 1 proc", "peak RSS MiB", "growth MiB")
    header = f"{'preset':<6} {'setup':<24} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, (10, 9, 13, 11)))
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['preset']:<6} {row['setup']:<24} {row['samples_per_s']:>10.2f} "
            f"{row['speed_vs_one_process_all_threads']:>9.2f} {row['peak_rss_mb_per_rank']:>13.0f} "
            f"{row['peak_growth_mb_per_rank']:>11.0f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "train_bench",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "cores": args.cores,
        "machine": machine(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
