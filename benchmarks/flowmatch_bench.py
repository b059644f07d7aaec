"""Action error against the number of function evaluations (NFE) for every flowmatch solver and grid.

Trains a flow-matching head on the bimodal task (flowmatch.BimodalChunkTask), whose true conditional
distribution is known, then samples it with every solver, step count and time grid and measures the sliced
2-Wasserstein distance between the sampled chunks and true chunks, per context, averaged over contexts.
Every row uses the same noise and the same true samples (paired comparison), and the metric uses the same
projections, so differences between rows are differences between solvers.

Also reported: the metric's noise floor (true samples against an independent set of true samples), the error
of the model's exact flow (dopri5 at tight tolerance: what is left is model error), each row's distance to
that exact flow (pure solver error, same noise), and an MSE regressor of the same size.

    python benchmarks/flowmatch_bench.py --out flowmatch_bench.json

The JSON has `rows` ({solver, grid, steps, nfe, error, solver_error}), `euler10_error` (pi0's 10 uniform
Euler steps) and `min_nfe_matching_euler10` (fewest NFE of any row whose error <= euler10_error).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass

import torch

import flowmatch as fm

# Fixed-step settings: (solver, grid name, grid parameters, step counts).
FIXED_SETTINGS: list[tuple[str, str, dict[str, float], list[int]]] = [
    ("euler", "uniform", {}, [1, 2, 3, 4, 5, 6, 8, 10, 16, 32]),
    ("midpoint", "uniform", {}, [1, 2, 3, 4, 5, 8, 16]),
    ("heun", "uniform", {}, [1, 2, 3, 4, 5, 8]),
    ("rk4", "uniform", {}, [1, 2, 4, 8]),
    # Non-uniform grids chosen before measuring: steps packed near the data end (power), at both ends
    # (cosine), or near the noise end (shifted); the few-step rows they win are reported as such.
    ("euler", "power", {"exponent": 2.0}, [2, 3, 4, 5, 10]),
    ("midpoint", "power", {"exponent": 2.0}, [1, 2, 3, 5]),
    ("heun", "power", {"exponent": 2.0}, [2, 3, 5]),
    ("euler", "power", {"exponent": 3.0}, [2, 3, 4, 5, 10]),
    ("midpoint", "power", {"exponent": 3.0}, [2, 3, 5]),
    ("euler", "cosine", {}, [3, 4, 5, 10]),
    ("midpoint", "cosine", {}, [2, 3, 5]),
    ("euler", "shifted", {"shift": 3.0}, [3, 5, 10]),
]
ADAPTIVE_TOLERANCES = {"dopri5": [1e-2, 1e-3, 1e-4], "bosh3": [1e-2, 1e-3]}
EXACT_TOLERANCE = 1e-5


@dataclass
class Evaluation:
    """Fixed inputs shared by every row: contexts, noise, true samples and metric projections."""

    context: torch.Tensor  # (M * N, C): each of M contexts repeated N times
    noise: torch.Tensor  # (M * N, H, D)
    truth: torch.Tensor  # (M, N, H * D)
    contexts: int
    samples: int
    seed: int

    def error(self, chunks: torch.Tensor) -> float:
        """Mean over contexts of the sliced W2 between ``chunks`` (M * N, H, D) and the true samples."""
        flat = chunks.reshape(self.contexts, self.samples, -1)
        distances = [
            fm.sliced_wasserstein(
                flat[j],
                self.truth[j],
                num_projections=128,
                generator=torch.Generator().manual_seed(self.seed),
            )
            for j in range(self.contexts)
        ]
        return float(torch.stack(distances).mean())


def build_evaluation(task: fm.BimodalChunkTask, contexts: int, samples: int, seed: int) -> Evaluation:
    g = torch.Generator().manual_seed(seed)
    distinct = task.sample_context(contexts, generator=g)
    context = distinct.repeat_interleave(samples, dim=0)
    truth, _ = task.sample_actions(context, generator=g)
    noise = fm.gaussian_noise((contexts * samples, task.horizon, task.action_dim), generator=g)
    return Evaluation(context, noise, truth.reshape(contexts, samples, -1), contexts, samples, seed)


def metric_noise_floor(task: fm.BimodalChunkTask, evaluation: Evaluation, seed: int) -> float:
    """The error of a perfect sampler: an independent set of true samples for the same contexts."""
    independent, _ = task.sample_actions(evaluation.context, generator=torch.Generator().manual_seed(seed))
    return evaluation.error(independent)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument(
        "--time-min-period", type=float, default=4e-3, help="time embedding's shortest period (pi0: 4e-3)"
    )
    parser.add_argument("--contexts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=256, help="samples per context")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = fm.BimodalChunkTask()
    config = fm.FlowMatchingHeadConfig(
        action_dim=task.action_dim,
        horizon=task.horizon,
        context_dim=task.context_dim,
        width=args.width,
        time_min_period=args.time_min_period,
    )
    torch.manual_seed(args.seed)
    head = fm.FlowMatchingHead(config)
    start = time.perf_counter()
    losses = fm.fit(head, task, steps=args.train_steps, batch_size=256, learning_rate=3e-3, seed=args.seed)
    train_seconds = time.perf_counter() - start
    torch.manual_seed(args.seed)
    regressor = fm.MSERegressor(config)
    fm.fit(regressor, task, steps=args.train_steps, batch_size=256, learning_rate=3e-3, seed=args.seed)

    evaluation = build_evaluation(task, args.contexts, args.samples, args.seed + 1)
    noise_floor = metric_noise_floor(task, evaluation, args.seed + 2)

    def run(solver: str, **kwargs) -> fm.SampleResult:
        return head.sample(evaluation.context, noise=evaluation.noise, solver=solver, **kwargs)

    exact = run("dopri5", rtol=EXACT_TOLERANCE, atol=EXACT_TOLERANCE)
    exact_error = evaluation.error(exact.x)
    with torch.no_grad():
        regressor_error = evaluation.error(regressor.predict(evaluation.context))

    rows = []
    for solver, grid_name, params, step_counts in FIXED_SETTINGS:
        for steps in step_counts:
            grid = fm.make_time_grid(grid_name, steps, **params)
            result = run(solver, time_grid=grid)
            rows.append(_row(solver, _grid_label(grid_name, params), steps, result, evaluation, exact.x))
    for solver, tolerances in ADAPTIVE_TOLERANCES.items():
        for tol in tolerances:
            result = run(solver, rtol=tol, atol=tol)
            rows.append(_row(solver, f"adaptive tol={tol:g}", None, result, evaluation, exact.x))

    euler10 = next(r for r in rows if r["solver"] == "euler" and r["grid"] == "uniform" and r["steps"] == 10)
    matching = [r for r in rows if r["error"] <= euler10["error"]]
    min_nfe = min(r["nfe"] for r in matching)
    report = {
        "rows": rows,
        "euler10_error": euler10["error"],
        "min_nfe_matching_euler10": min_nfe,
        "settings_matching_euler10_at_min_nfe": [
            f"{r['solver']} {r['grid']} steps={r['steps']}" for r in matching if r["nfe"] == min_nfe
        ],
        "goal_met_with_at_most_5_nfe": min_nfe <= 5,
        "metric": "mean over contexts of sliced W2 (128 projections) between N sampled and N true chunks",
        "metric_noise_floor": noise_floor,
        "exact_flow_error": exact_error,
        "exact_flow_nfe": exact.nfe,
        "mse_regressor_error": regressor_error,
        "contexts": args.contexts,
        "samples_per_context": args.samples,
        "train_steps": args.train_steps,
        "final_train_loss_mean_last_100": sum(losses[-100:]) / len(losses[-100:]),
        "train_seconds": train_seconds,
        "parameters": sum(p.numel() for p in head.parameters()),
        "config": config.to_dict(),
        "machine": f"{platform.machine()} torch {torch.__version__}, {args.threads} thread(s)",
    }
    _print_table(report)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.out}")


def _grid_label(name: str, params: dict[str, float]) -> str:
    return name if not params else f"{name}(" + ", ".join(f"{k}={v:g}" for k, v in params.items()) + ")"


def _row(solver, grid, steps, result, evaluation, exact) -> dict:
    return {
        "solver": solver,
        "grid": grid,
        "steps": steps,
        "nfe": result.nfe,
        "error": evaluation.error(result.x),
        "solver_error": float((result.x - exact).pow(2).mean().sqrt()),
    }


def _print_table(report: dict) -> None:
    print(f"{'solver':<9} {'grid':<22} {'steps':>5} {'nfe':>5} {'W2 error':>9} {'vs exact flow':>13}")
    for r in sorted(report["rows"], key=lambda r: (r["nfe"], r["error"])):
        steps = "-" if r["steps"] is None else r["steps"]
        mark = " <= euler10" if r["error"] <= report["euler10_error"] else ""
        print(
            f"{r['solver']:<9} {r['grid']:<22} {steps:>5} {r['nfe']:>5} {r['error']:>9.4f} "
            f"{r['solver_error']:>13.4f}{mark}"
        )
    print(f"euler x10 (pi0) error: {report['euler10_error']:.4f}")
    print(f"fewest NFE matching it: {report['min_nfe_matching_euler10']}")
    print(f"  by: {report['settings_matching_euler10_at_min_nfe']}")
    exact = f"exact flow (dopri5 {EXACT_TOLERANCE:g}, {report['exact_flow_nfe']} NFE)"
    print(f"{exact}: {report['exact_flow_error']:.4f}")
    print(f"metric noise floor (true vs true): {report['metric_noise_floor']:.4f}")
    print(f"MSE regressor of the same size: {report['mse_regressor_error']:.4f}")


if __name__ == "__main__":
    main()
