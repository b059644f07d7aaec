"""Check :func:`f1.train.memory_plan.plan_memory` against what a real training run holds.

For each preset a fresh subprocess imports everything, builds the synthetic batch and the text tokenizer,
records its baseline, then builds the F1 model and runs a few real steps of the real trainer (stage III,
AdamW, gradient clipping, one process so no DDP wrapper). What it measures:

- CPU: peak resident memory growth over the baseline, read from ``/proc/self/status``: the baseline is
  ``VmRSS`` after the batch and the tokenizer are built; ``VmHWM`` (the high-water mark) is reset there by
  writing ``5`` to ``/proc/self/clear_refs`` and read after the steps. ``resource.getrusage``'s
  ``ru_maxrss`` is recorded too, but it cannot be reset, so it includes the imports. The child runs with
  ``MALLOC_MMAP_THRESHOLD_=65536``: glibc otherwise raises its mmap threshold after the first large free
  and keeps later freed tensors in its heap, so peak RSS would count memory the program no longer holds.
  The batch existed at the baseline, so the plan's total less its ``batch`` term is compared.
- CUDA (when a GPU is present; not run on the CPU-only machine this was written on): the batch is put on
  the GPU, the peak statistics are reset, and the peak is ``torch.cuda.max_memory_allocated()`` less the
  memory allocated at the baseline; the trainer moves each batch again (a device copy), so the plan's
  whole total is compared.

Batch sizes: large enough that the model's memory dominates what the runtime allocates once (the
autograd engine, oneDNN and the fused optimizer's first call: tens of MiB here), so that the comparison
tests the plan rather than the process: ``tiny`` at 128 (its weights and optimizer are 40 MiB, its
activations about 80 KiB per sample), ``small`` at 16.

    python benchmarks/memory_check.py --out docs/results/memory_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_BATCH = {"tiny": 128, "small": 16}
TARGET = 0.15  # relative error the plan should stay within


def _status() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def child(preset_name: str, batch_size: int, steps: int, precision: str, device_name: str) -> dict[str, Any]:
    """One measured run (in its own process): see the module docstring."""
    import torch

    from f1.model import F1Model, preset
    from f1.model.language import build_tokenizer
    from f1.train import DistributedContext, Trainer, load_stage_config
    from f1.train.memory_plan import training_batch

    torch.set_num_threads(1)
    config = preset(preset_name)
    device = torch.device(device_name)
    scales = min(4, config.generation.vqvae_scales)
    stage = load_stage_config(
        3,
        {
            "steps": steps,
            "batch_size": batch_size,
            "precision": precision,
            "generation_scales": scales,
            "log_interval": steps,
            "checkpoint_interval": steps,
            "schedule": {"warmup_steps": 1},
        },
    )
    batch = training_batch(config, batch_size)
    tokenizer = build_tokenizer(config.language)
    tokenizer(["warm the tokenizer's tables"])
    out: dict[str, Any] = {
        "preset": preset_name,
        "batch_size": batch_size,
        "steps": steps,
        "device": device_name,
    }
    if device.type == "cuda":
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = _status()["VmRSS"]
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # VmHWM := VmRSS
    start = time.perf_counter()
    torch.manual_seed(0)
    model = F1Model(config, tokenizer=tokenizer)
    trainer = Trainer(model, [batch], stage, context=DistributedContext(device=device), progress=False)
    result = trainer.fit()
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["final_loss"] = result.history[-1]["loss"]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        out["method"] = "torch.cuda.max_memory_allocated() - memory_allocated() at the baseline"
        out["baseline_bytes"] = baseline
        out["peak_growth_bytes"] = torch.cuda.max_memory_allocated(device) - baseline
    else:
        status = _status()
        out["method"] = (
            "/proc/self/status VmHWM (reset by clear_refs at the baseline) - VmRSS at the baseline"
        )
        out["baseline_bytes"] = baseline
        out["peak_growth_bytes"] = status["VmHWM"] - baseline
        out["ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def check(preset_name: str, batch_size: int, steps: int, precision: str, device: str) -> dict[str, Any]:
    """Plan here, measure in a fresh subprocess, compare."""
    from f1.model import preset
    from f1.train.memory_plan import plan_memory

    config = preset(preset_name)
    plan = plan_memory(
        config,
        strategy="ddp",
        world_size=1,
        batch_size=batch_size,
        precision=precision,
        generation_scales=min(4, config.generation.vqvae_scales),
    )
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        __file__,
        "--child",
        preset_name,
        str(batch_size),
        str(steps),
        precision,
        device,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"the measured run of {preset_name} failed:\n{done.stderr[-4000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    compared = plan.total if device.startswith("cuda") else plan.total - plan.other["batch"]
    growth = measured["peak_growth_bytes"]
    return {
        "preset": preset_name,
        "batch_size": batch_size,
        "precision": precision,
        "measured": measured,
        "plan": {
            "total": plan.total,
            "peak_phase": plan.peak_phase,
            "compared": compared,
            "categories": plan.categories(),
            "phases": plan.phases,
            "calibration": {k: plan.calibration[k] for k in ("config", "batch_size", "mode", "saved_bytes")},
        },
        "relative_error": round((compared - growth) / growth, 4),
        "within_target": abs(compared - growth) <= TARGET * growth,
    }


def formula_check(mode: str, batch_size: int = 4) -> dict[str, Any]:
    """The activation formula calibrated at ``tiny`` predicts ``small``; both measured on this CPU."""
    from f1.train.memory_plan import _scaled_sites, measure_activations

    tiny = measure_activations("tiny", batch_size, mode=mode)
    small = measure_activations("small", batch_size, mode=mode)
    predicted, fallback = _scaled_sites(tiny, small.units, batch_size)
    parts: dict[str, dict[str, float]] = {}
    for site in set(predicted) | set(small.site_bytes):
        part = site.split(".", 1)[0]
        entry = parts.setdefault(part, {"predicted": 0.0, "measured": 0.0})
        entry["predicted"] += predicted.get(site, 0.0)
        entry["measured"] += small.site_bytes.get(site, 0)
    rates = tiny.rates()
    working = {}
    for name, measured in small.working_bytes.items():
        units = small.units[name] * (small.units["frames_per_sample"] if name == "frame_encoding" else 1.0)
        working[name] = {"predicted": rates.get(name, 0.0) * units * batch_size, "measured": measured}
    for entry in [*parts.values(), *working.values()]:
        entry["relative_error"] = round((entry["predicted"] - entry["measured"]) / entry["measured"], 4)
    total = sum(predicted.values())
    return {
        "mode": mode,
        "batch_size": batch_size,
        "saved_bytes": {
            "predicted": round(total),
            "measured": small.saved_bytes,
            "relative_error": round((total - small.saved_bytes) / small.saved_bytes, 4),
        },
        "parts": parts,
        "working": working,
        "fallback_sites": fallback,
        "tiny": tiny.to_dict(),
        "small": small.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="*", default=list(DEFAULT_BATCH))
    parser.add_argument("--batch", nargs="*", default=[], metavar="PRESET=B", help="override a batch size")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--precision", default="fp32", help="fp32 (the committed check) or bf16")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--out", type=Path, default=Path("docs/results/memory_check.json"))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, batch, steps, precision, device = args.child
        print(json.dumps(child(name, int(batch), int(steps), precision, device)))
        return 0
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    batches = dict(DEFAULT_BATCH)
    for item in args.batch:
        name, _, value = item.partition("=")
        batches[name] = int(value)
    rows = [check(name, batches.get(name, 8), args.steps, args.precision, device) for name in args.presets]
    formulas = [formula_check(mode) for mode in ("fp32", "bf16_weights")]
    report = {
        "what": "plan_memory's total (less the batch on the CPU) against a real training run's peak",
        "target_relative_error": TARGET,
        "device": device,
        "torch": torch.__version__,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "rows": rows,
        "formula_small_from_tiny": formulas,
    }
    print(f"{'preset':8} {'batch':>5} {'plan MiB':>10} {'measured MiB':>13} {'error':>7}  peak phase")
    for row in rows:
        print(
            f"{row['preset']:8} {row['batch_size']:5d} {row['plan']['compared'] / 2**20:10.1f} "
            f"{row['measured']['peak_growth_bytes'] / 2**20:13.1f} {row['relative_error']:+7.1%}  "
            f"{row['plan']['peak_phase']}"
        )
    print("activation formula calibrated at tiny, predicting small (both measured, batch 4):")
    for formula in formulas:
        saved = formula["saved_bytes"]
        parts = ", ".join(f"{k} {v['relative_error']:+.1%}" for k, v in sorted(formula["parts"].items()))
        working = ", ".join(f"{k} {v['relative_error']:+.1%}" for k, v in formula["working"].items())
        print(
            f"  {formula['mode']:12} saved {saved['predicted'] / 2**20:7.1f} MiB predicted, "
            f"{saved['measured'] / 2**20:7.1f} measured ({saved['relative_error']:+.1%}); {parts}; {working}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(partial, args.out)
    print(f"wrote {args.out}")
    return 0 if all(row["within_target"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
