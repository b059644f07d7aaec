"""F1 policy benchmark: per-module latency, cached vs recomputed inference, parameters and FLOPs per preset.

    f1 bench --out f1_bench.json [--presets tiny small] [--policy DIR ...] [--repeats 5] [--threads 1]
             [--compile] [--device auto|cpu|cuda]
    python benchmarks/f1_bench.py --out f1_bench.json   # the same command, from a checkout

``--policy DIR`` adds a row for a saved policy (``F1Policy.save``/``f1 convert`` output), e.g. a pi0
checkpoint imported with ``f1 convert --from pi0``; its row is named after the directory. A policy whose
language tokenizer is a Gemma one (pi0, F1) is timed on synthetic token ids of a fixed length, since no
tokenizer ships with the weights and latency does not depend on which ids they are.

JSON written to ``--out``:

- ``presets.<name>.params``: parameters per component (``total`` included), from a meta-device build;
- ``presets.<name>.flops``: FLOPs of one ``plan`` call per module (see ``f1.model.inference_flops``);
- ``presets.<name>.latency_ms.<module>``: median wall time of one ``plan`` call (batch 1) per module
  (``preprocess``, ``image_encode``, ``prefix``, ``history_encode``, ``foresight``, ``flow_steps``,
  ``total``),
  for the presets run on this machine; ``null`` for ``f1-4.2b`` unless a GPU is present;
- ``presets.<name>.recomputed_total_ms`` and ``presets.<name>.cached_inference_speedup``: the same call
  without the KV cache (every foresight scale and ODE step re-runs the whole prefix) and the ratio;
- ``presets.<name>.achieved_gflops``: the plan's FLOPs over its median total time;
- ``presets.<name>.compiled_latency_ms`` (with ``--compile``): the same breakdown after
  :meth:`F1Policy.compile`, timed alternately with the eager calls, ``compile_s`` the first compiled call
  and ``compiled_speedup`` eager total over compiled total;
- ``presets.<name>.train_step_ms``: median forward + backward + (fused) AdamW step at batch 8;
- ``cached_inference_speedup``: the ratio of the first preset run (``tiny`` by default);
- ``machine``: CPU/GPU, threads and the load average (the CPU may be shared with other processes), and
  ``matmul_gflops``: a square matmul's rate measured in the same run (1024 x 1024 float32 on a CPU,
  8192 x 8192 bfloat16 on a GPU), the yardstick for ``achieved_gflops``.

``--device cuda --presets f1-4.2b`` times the published shape in bfloat16 (3 cameras, the configured
foresight scales and flow steps) and prints the paper's RTX 4090 breakdown beside it; on a CPU that preset is
refused (3.7B parameters), and only its parameters and FLOPs are reported.

Compared variants (cached, recomputed) are timed alternately so that a change in the machine's load
affects both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import torch

from f1.keys import camera_key
from f1.model import (
    CheckpointError,
    ConfigError,
    F1Model,
    F1Policy,
    count_parameters,
    inference_flops,
    preset,
)
from f1.model.checkpoint import config_of
from f1.model.language import TokenizedText
from f1.model.presets import preset_names
from mot import COMPILE_MODES

PAPER_4090_MS = {
    "image_process": 18.0,
    "temporal_downsampling": 28.0,
    "image_encoder": 18.0,
    "foresight": 76.0,
    "flow_steps_10": 95.0,
    "total": 235.0,
}


def _observation(policy: F1Policy, batch_size: int, seed: int, *, training: bool) -> dict[str, Any]:
    config = policy.config
    g = torch.Generator().manual_seed(seed)
    size = config.vision.image_size
    embodiment = config.embodiments[0]
    out: dict[str, Any] = {
        camera_key(camera): torch.rand(batch_size, 3, size, size, generator=g) for camera in config.cameras
    }
    out["observation.state"] = torch.randn(batch_size, embodiment.state_dim, generator=g)
    out["task"] = ["put the red cube in the green bowl"] * batch_size
    if config.has_history:
        vq = config.generation.vqvae.image_size
        frames = config.generation.history_frames
        out["history"] = torch.rand(batch_size, frames, 3, *vq, generator=g)
        if training:
            out["future_image"] = torch.rand(batch_size, 3, *vq, generator=g)
    if training:
        out["action"] = torch.randn(batch_size, config.action.chunk_size, embodiment.action_dim, generator=g)
    return {k: (v.to(policy.device) if isinstance(v, torch.Tensor) else v) for k, v in out.items()}


class SyntheticTokenIds:
    """A stand-in tokenizer for timing: every text becomes ``length`` ids ``1..length`` (right-padded)."""

    def __init__(self, max_length: int, vocab_size: int, length: int = 10) -> None:
        self.max_length, self.vocab_size = max_length, vocab_size
        self.length = min(length, max_length)

    def __call__(self, texts: list[str] | str) -> TokenizedText:
        count = 1 if isinstance(texts, str) else len(texts)
        ids = torch.zeros(count, self.max_length, dtype=torch.long)
        ids[:, : self.length] = torch.arange(1, self.length + 1) % self.vocab_size
        return TokenizedText(ids, torch.full((count,), self.length, dtype=torch.long))


def load_benchmarked_policy(directory: str | os.PathLike[str], device: torch.device) -> F1Policy:
    """A saved policy for timing (Gemma-tokenized ones get :class:`SyntheticTokenIds`)."""
    language = config_of(directory).language
    tokenizer = None
    if language.tokenizer == "gemma":
        tokenizer = SyntheticTokenIds(language.max_length, language.vocab_size)
    return F1Policy.load(directory, device=device, tokenizer=tokenizer).eval()


def _median_breakdown(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def bench_latency(policy: F1Policy, repeats: int, compiled: F1Policy | None = None) -> dict[str, Any]:
    """Median per-module latency of cached ``plan`` calls and total of recomputed ones, alternated (and of
    ``compiled``, a compiled policy of the same weights, when given)."""
    observation = _observation(policy, 1, 0, training=False)
    for use_cache in (True, False):  # warm-up (allocator, tokenizer, lazy init)
        policy.plan(observation, seed=0, use_cache=use_cache, profile=True)
    compile_s = None
    if compiled is not None:
        start = time.perf_counter()
        compiled.plan(observation, seed=0, profile=True)  # compiles every graph of this shape
        compile_s = round(time.perf_counter() - start, 2)
    cached, recomputed, fast = [], [], []
    for i in range(repeats):
        cached.append(policy.plan(observation, seed=i, profile=True).latency_ms)
        recomputed.append(policy.plan(observation, seed=i, use_cache=False, profile=True).latency_ms)
        if compiled is not None:
            fast.append(compiled.plan(observation, seed=i, profile=True).latency_ms)
    latency = _median_breakdown(cached)
    recomputed_total = round(statistics.median(r["total"] for r in recomputed), 3)
    out: dict[str, Any] = {
        "latency_ms": latency,
        "recomputed_total_ms": recomputed_total,
        "recomputed_latency_ms": _median_breakdown(recomputed),
        "cached_inference_speedup": round(recomputed_total / latency["total"], 3),
    }
    if compiled is not None:
        out["compiled_latency_ms"] = _median_breakdown(fast)
        out["compile_s"] = compile_s
        out["compiled_speedup"] = round(latency["total"] / out["compiled_latency_ms"]["total"], 3)
    return out


def matmul_gflops(device: torch.device, repeats: int = 10) -> float:
    """A square matmul's rate on ``device`` with the current threads: 1024 float32 on a CPU, 8192 bfloat16
    on a GPU (best of ``repeats`` timed products after two warm-ups)."""
    size, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 2):
        _synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _synchronize(device)
        if i >= 2:
            best = min(best, time.perf_counter() - start)
    return round(2 * size**3 / best / 1e9, 1)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train_step(policy: F1Policy, batch_size: int, repeats: int) -> float:
    """Median ms of the model's training pass + backward + AdamW step at ``batch_size``."""
    model = policy.model.train()
    # fused AdamW: torch's default per-tensor loop is slow on a CPU (the tiny preset's 3.2M-row embedding)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    batch = _observation(policy, batch_size, 1, training=True)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        losses = model(batch, generation_scales=None)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if i:  # the first step pays one-off costs
            times.append((time.perf_counter() - start) * 1e3)
    model.eval()
    return round(statistics.median(times), 3)


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_start": list(os.getloadavg()),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run(args: argparse.Namespace) -> int:
    """Time the presets, print the table, write the JSON report to ``args.out``."""
    unknown = [name for name in args.presets if name not in preset_names()]
    if unknown:
        raise ValueError(f"--presets: unknown {unknown}, expected names among {list(preset_names())}")
    for name in ("repeats", "threads", "train_batch"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag}: expected a positive count, received {getattr(args, name)}")
    if args.out.is_dir():
        raise ValueError(f"--out: {args.out} is a directory; give the path of the JSON file to write")
    device = _resolve_device(args.device)
    if args.compile_mode is not None and args.compile_mode not in COMPILE_MODES:
        raise ValueError(
            f"--compile-mode: expected one of {list(COMPILE_MODES)}, received {args.compile_mode!r}"
        )
    big = "f1-4.2b"
    if big in args.presets and device.type != "cuda":
        raise ValueError(
            f"--presets: {big} (3.7B parameters) is timed on a GPU only: pass --device cuda on a machine "
            "with one (its parameters and FLOPs are reported without it)"
        )
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"machine": machine_info(device), "presets": {}}
    report["machine"]["matmul_gflops"] = matmul_gflops(device)

    policies = list(args.policy or [])
    for directory in policies:
        try:
            config_of(directory)
        except (CheckpointError, ConfigError) as error:
            raise ValueError(f"--policy: {error}") from None
    rows = [(name, None) for name in args.presets] + [(d.name, d) for d in policies]
    if not rows:
        raise ValueError("--presets/--policy: expected at least one preset or policy directory to time")
    for name, directory in rows:
        policy = _benchmarked_policy(name, directory, device)
        entry = {"params": count_parameters(policy.config), "flops": inference_flops(policy.config)}
        if directory is not None:
            entry["policy_dir"] = str(directory)
            entry["mode"] = policy.config.mode
        compiled = None
        if args.compile:  # the same weights, compiled separately so that both run in this process
            compiled = _benchmarked_policy(name, directory, device).compile(mode=args.compile_mode)
        entry |= bench_latency(policy, args.repeats, compiled)
        entry |= _rates(entry, report["machine"]["matmul_gflops"])
        if name == big:  # inference only: no optimizer state for 3.7B parameters
            entry["dtype"] = "bfloat16"
            entry["paper_rtx4090_ms"] = PAPER_4090_MS
            report["presets"][name] = entry
            continue
        entry["train_step_ms"] = bench_train_step(policy, args.train_batch, max(2, args.repeats // 2))
        entry["train_batch"] = args.train_batch
        for scales in (
            range(1, policy.config.generation.vqvae_scales + 1) if policy.config.has_foresight else ()
        ):
            observation = _observation(policy, 1, 0, training=False)
            runs = [
                policy.plan(observation, seed=i, num_scales=scales, profile=True).latency_ms
                for i in range(args.repeats)
            ]
            entry.setdefault("foresight_ms_by_scales", {})[str(scales)] = round(
                statistics.median(r["foresight"] for r in runs), 3
            )
        report["presets"][name] = entry
        del policy

    if big not in report["presets"]:
        entry = report["presets"][big] = {
            "params": count_parameters(preset(big)),
            "flops": inference_flops(preset(big)),
            "paper_rtx4090_ms": PAPER_4090_MS,
            "latency_ms": None,
            "note": (
                "not timed (pass --device cuda --presets f1-4.2b on a GPU); "
                "the paper reports 235 ms on an RTX 4090 (3 cameras)"
            ),
        }
    report["cached_inference_speedup"] = report["presets"][rows[0][0]]["cached_inference_speedup"]
    report["machine"]["load_average_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    _print_table(report)
    return 0


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected auto, cpu or cuda, received {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda requested but torch.cuda.is_available() is False on this machine")
    return torch.device(name)


def _benchmarked_policy(name: str, directory: Any, device: torch.device) -> F1Policy:
    """Preset ``name`` with seed-0 weights (bfloat16 for ``f1-4.2b``, built on the GPU) or a saved one."""
    torch.manual_seed(0)
    if directory is not None:
        return load_benchmarked_policy(directory, device)
    config = preset(name)
    tokenizer = None
    if config.language.tokenizer == "gemma":  # no tokenizer ships with a preset: synthetic ids, as above
        tokenizer = SyntheticTokenIds(config.language.max_length, config.language.vocab_size)
    if name == "f1-4.2b":
        with torch.device(device):
            model = F1Model(config, tokenizer=tokenizer).to_precision(torch.bfloat16)
        return F1Policy(model).eval()
    return F1Policy(config, tokenizer=tokenizer).to(device).eval()


def _rates(entry: dict[str, Any], matmul: float) -> dict[str, Any]:
    """GFLOP/s of the eager (and compiled) plan and their share of the matmul rate."""
    flops = entry["flops"]["total"]
    out: dict[str, Any] = {}
    for key, latency in (("", entry["latency_ms"]), ("compiled_", entry.get("compiled_latency_ms"))):
        if latency:
            gflops = flops / (latency["total"] / 1e3) / 1e9
            out[f"{key}achieved_gflops"] = round(gflops, 2)
            out[f"{key}matmul_fraction"] = round(gflops / matmul, 4)
    return out


def _print_table(report: dict[str, Any]) -> None:
    modules = ["preprocess", "image_encode", "prefix", "history_encode", "foresight", "flow_steps", "total"]
    print(f"{'preset':10s} " + " ".join(f"{m:>14s}" for m in modules) + f" {'no cache':>10s} {'speedup':>8s}")
    for name, entry in report["presets"].items():
        latency = entry.get("latency_ms")
        if not latency:
            print(f"{name:10s} {entry.get('note', 'not timed')}")
            continue
        cells = " ".join(f"{latency.get(m, 0.0):14.1f}" for m in modules)
        recomputed, speedup = entry["recomputed_total_ms"], entry["cached_inference_speedup"]
        print(f"{name:10s} {cells} {recomputed:10.1f} {speedup:8.2f}")
        compiled = entry.get("compiled_latency_ms")
        if compiled:
            cells = " ".join(f"{compiled.get(m, 0.0):14.1f}" for m in modules)
            print(f"{'  compiled':10s} {cells} {'':10s} {entry['compiled_speedup']:8.2f}")
    matmul = report["machine"]["matmul_gflops"]
    for name, entry in report["presets"].items():
        params, flops = entry["params"]["total"], entry["flops"]["total"]
        step = entry.get("train_step_ms")
        extra = f", train step (batch {entry['train_batch']}) {step:.0f} ms" if step else ""
        print(f"{name:10s} params {params / 1e6:9.2f} M, plan {flops / 1e9:9.2f} GFLOP{extra}")
        for key, label in (("", "eager"), ("compiled_", "compiled")):
            if f"{key}achieved_gflops" in entry:
                rate, share = entry[f"{key}achieved_gflops"], entry[f"{key}matmul_fraction"]
                print(
                    f"{'':10s} {label}: {rate:.1f} GFLOP/s, {share:.0%} of the matmul rate ({matmul} GFLOP/s)"
                )
    big = report["presets"].get("f1-4.2b", {})
    if big.get("latency_ms"):
        print("f1-4.2b beside the paper (RTX 4090, ms):")
        ours = big["latency_ms"]
        rows = [
            ("image_process + preprocess", PAPER_4090_MS["image_process"], ours.get("preprocess")),
            ("image_encoder", PAPER_4090_MS["image_encoder"], ours.get("image_encode")),
            (
                "temporal downsampling (history)",
                PAPER_4090_MS["temporal_downsampling"],
                ours.get("history_encode"),
            ),
            ("foresight", PAPER_4090_MS["foresight"], ours.get("foresight")),
            ("flow steps (10)", PAPER_4090_MS["flow_steps_10"], ours.get("flow_steps")),
            ("total", PAPER_4090_MS["total"], ours.get("total")),
        ]
        for label, paper, mine in rows:
            print(
                f"  {label:34s} paper {paper:7.1f}   here {mine if mine is not None else float('nan'):7.1f}"
            )
