"""`F1Policy.plan` latency of this checkout against an earlier commit, measured in the same run.

    python benchmarks/plan_speedup.py --baseline a70ba48 --out plan_speedup.json \
        [--presets tiny small] [--rounds 5] [--calls 10] [--compile]

The baseline's ``src/`` is exported with ``git archive`` into a temporary folder; every measurement is a
fresh process (one torch thread) that imports either that tree or this one, builds the preset with seed-0
weights, warms up with three plans and times ``--calls`` more (batch 1, cached inference, the host wall time
of the whole call, and the thread CPU time it took: it leaves out waits for the core, but on a slow host it
moves with the wall time). The variants (baseline, this tree eager, this tree compiled with
``--compile``) take turns for ``--rounds`` rounds, so a change in the machine's load affects all alike; the
table gives each variant's median over rounds of the per-process medians (wall and CPU), the speedups as
ratios of those, the achieved GFLOP/s (the plan's FLOPs from ``f1.model.inference_flops`` over the median
wall time) and its share of a 1024 x 1024 float32 matmul's rate measured in every worker process.

``a70ba48`` is the commit issue 17 measured its "today" against (42.9 ms at tiny, 479 ms at small).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = ("f1", "flowmatch", "mot", "var_foresight")


def _worker(preset_name: str, calls: int, compile_: bool) -> dict[str, Any]:
    """Runs inside a measurement process: time ``calls`` plans of ``preset_name`` (see the module doc)."""
    import torch

    from f1.model import F1Policy, preset

    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = F1Policy(preset(preset_name)).eval()
    config = policy.config
    g = torch.Generator().manual_seed(0)
    size = config.vision.image_size
    observation: dict[str, Any] = {
        f"observation.images.{camera}": torch.rand(1, 3, size, size, generator=g) for camera in config.cameras
    }
    observation["observation.state"] = torch.randn(1, config.embodiments[0].state_dim, generator=g)
    observation["task"] = ["put the red cube in the green bowl"]
    if config.mode != "no_gen":
        vq = config.generation.vqvae.image_size
        observation["history"] = torch.rand(1, config.generation.history_frames, 3, *vq, generator=g)
    compile_s = None
    if compile_:
        start = time.perf_counter()
        policy.compile()
        policy.plan(observation, seed=0)
        compile_s = time.perf_counter() - start
    for i in range(3):
        policy.plan(observation, seed=i)
    times, cpu_times = [], []
    for i in range(calls):
        start, start_cpu = time.perf_counter(), time.thread_time()
        policy.plan(observation, seed=i)
        times.append((time.perf_counter() - start) * 1e3)
        cpu_times.append((time.thread_time() - start_cpu) * 1e3)
    a, b = torch.randn(1024, 1024, generator=g), torch.randn(1024, 1024, generator=g)
    best = float("inf")
    for i in range(7):
        start = time.perf_counter()
        torch.mm(a, b)
        if i >= 2:
            best = min(best, time.perf_counter() - start)
    return {
        "median_ms": statistics.median(times),
        "median_cpu_ms": statistics.median(cpu_times),
        "compile_s": compile_s,
        "matmul_gflops": 2 * 1024**3 / best / 1e9,
    }


def _measure(tree: Path, preset_name: str, calls: int, compile_: bool) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(str(tree / "src" / d) for d in DISTRIBUTIONS)
    argv = [sys.executable, __file__, "--worker", preset_name, "--calls", str(calls)]
    if compile_:
        argv.append("--compile")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"measurement of {preset_name} in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _export(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"], capture_output=True, check=False
    )
    if archive.returncode:
        raise SystemExit(f"--baseline: git archive {revision!r} failed: {archive.stderr.decode().strip()}")
    path = into / "archive.tar"
    path.write_bytes(archive.stdout)
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    return into


def _head() -> str:
    argv = ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="a70ba48", help="git revision to compare against")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--rounds", type=int, default=5, help="turns of every variant (median over them)")
    parser.add_argument("--calls", type=int, default=10, help="timed plans per process (median)")
    parser.add_argument("--compile", action="store_true", help="also time this tree after F1Policy.compile")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/plan_speedup.json"))
    parser.add_argument("--worker", metavar="PRESET", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.calls, args.compile)))
        return 0
    if args.rounds < 1 or args.calls < 1:
        parser.error(f"--rounds and --calls: expected positive counts, received {args.rounds}, {args.calls}")
    sys.path[:0] = [str(ROOT / "src" / d) for d in DISTRIBUTIONS]
    from f1.model import inference_flops, preset

    variants = ["baseline", "eager"] + (["compiled"] if args.compile else [])
    with tempfile.TemporaryDirectory() as scratch:
        baseline = _export(args.baseline, Path(scratch))
        trees = {"baseline": baseline, "eager": ROOT, "compiled": ROOT}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            p: {v: [] for v in variants} for p in args.presets
        }
        load_start = os.getloadavg()
        for round_ in range(args.rounds):
            for name in args.presets:
                for variant in variants:
                    result = _measure(trees[variant], name, args.calls, variant == "compiled")
                    runs[name][variant].append(result)
                    ms = result["median_ms"]
                    print(f"round {round_ + 1}/{args.rounds} {name:6s} {variant:9s} {ms:8.1f} ms", flush=True)
    report: dict[str, Any] = {
        "baseline": args.baseline,
        "head": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": 1,
            "load_average_start": list(load_start),
            "load_average_end": list(os.getloadavg()),
        },
        "rounds": args.rounds,
        "calls": args.calls,
        "presets": {},
    }
    header = (
        f"{'preset':8s} {'variant':9s} {'ms':>9s} {'speedup':>8s} {'GFLOP/s':>8s} {'of matmul':>9s} "
        f"{'cpu ms':>9s} {'cpu speedup':>11s}"
    )
    print(header)
    for name in args.presets:
        flops = inference_flops(preset(name))["total"]
        entry: dict[str, Any] = {"flops": flops}
        base = statistics.median(r["median_ms"] for r in runs[name]["baseline"])
        base_cpu = statistics.median(r["median_cpu_ms"] for r in runs[name]["baseline"])
        for variant in variants:
            median = statistics.median(r["median_ms"] for r in runs[name][variant])
            cpu = statistics.median(r["median_cpu_ms"] for r in runs[name][variant])
            matmul = statistics.median(r["matmul_gflops"] for r in runs[name][variant])
            gflops = flops / (median / 1e3) / 1e9
            entry[variant] = {
                "median_ms": round(median, 2),
                "per_round_ms": [round(r["median_ms"], 2) for r in runs[name][variant]],
                "speedup_vs_baseline": round(base / median, 3),
                "achieved_gflops": round(gflops, 2),
                "matmul_gflops": round(matmul, 1),
                "matmul_fraction": round(gflops / matmul, 4),
                "median_cpu_ms": round(cpu, 2),
                "per_round_cpu_ms": [round(r["median_cpu_ms"], 2) for r in runs[name][variant]],
                "cpu_speedup_vs_baseline": round(base_cpu / cpu, 3),
            }
            if variant == "compiled":
                entry[variant]["compile_s"] = [round(r["compile_s"], 1) for r in runs[name][variant]]
            row = entry[variant]
            print(
                f"{name:8s} {variant:9s} {median:9.1f} {row['speedup_vs_baseline']:8.2f} {gflops:8.1f} "
                f"{row['matmul_fraction']:9.0%} {cpu:9.1f} {row['cpu_speedup_vs_baseline']:11.2f}"
            )
        report["presets"][name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
