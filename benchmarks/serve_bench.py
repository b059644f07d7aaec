"""Policy server benchmark: round trip through openpi-client vs in-process ``plan``, and throughput.

    python benchmarks/serve_bench.py --out serve_bench.json [--presets tiny small] [--requests 200]
        [--clients 1 4 8] [--throughput-requests 32] [--throughput-rounds 3] [--threads 1]

Per preset, a random policy is saved and served by ``f1 serve`` in a subprocess on 127.0.0.1 (a robot's
client is another process, often another machine; a client in the server's process would share its GIL),
and the same chunk request (batch 1, uint8 HWC frames of every camera and the history, a seed) is timed:

- ``in_process_ms``: ``F1Policy.plan`` called directly (what a robot next to the model would pay);
- ``round_trip_ms``: ``WebsocketClientPolicy.infer`` (pack, send, check, plan, reply, unpack);
  the two alternate request by request, so that a change in the machine's load affects both alike;
- ``overhead_ms``: the server's cost, twice: ``difference_of_medians`` (median round trip minus median
  in-process call) and ``paired`` (per request, the round trip minus the model time the server measured
  for that very request, ``server_timing.infer_ms``: median and p99), which the model's own jitter does
  not blur;
- ``server_timing_ms``: medians of the reply's ``decode_ms``, ``queue_ms``, ``infer_ms``, ``handoff_ms``
  (the hops to the inference thread and back are ``queue_ms`` and ``handoff_ms``);
- ``checks_only_round_trip_ms``: the same request made to fail at the very end of the server's checks
  (a ``history_is_pad`` of the wrong length; modes with history), answered by the event loop with an
  error line: every cost of the protocol (client packing, both websocket ends, decoding, every check and
  conversion) but the hop to the inference thread, the model and the reply;
- ``code_us``: the server's code alone, timed in a loop in this process (medians, microseconds): the
  request's ``unpackb``, ``parse_request`` (checks and numpy -> torch) and the reply's ``packb``;
- ``throughput_rps.<k>``: requests per second with ``k`` clients sending at once (one thread each),
  ``--throughput-requests`` requests in all; the median of ``--throughput-rounds`` runs, the client
  counts taking turns round by round so that a change in the machine's load affects all alike. The
  model runs one request at a time (requests carry their own seeds, so they are not batched).

JSON written to ``--out``: ``machine``, ``settings`` and ``presets.<name>`` with the keys above.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from f1.eval.policy_benchmark import machine_info
from f1.keys import HISTORY_KEY, STATE_KEY, TASK_KEY, camera_key
from f1.model import F1Policy, preset
from f1.serve import packb, parse_request, unpackb

WARMUP = 5


def observation(policy: F1Policy, seed: int) -> dict[str, Any]:
    """A batch-1 chunk request as a client sends it: uint8 ``(H, W, 3)`` frames, float32 state."""
    config = policy.config
    rng = np.random.default_rng(seed)
    size = config.vision.image_size
    request: dict[str, Any] = {
        camera_key(c): rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for c in config.cameras
    }
    request[STATE_KEY] = rng.standard_normal(config.embodiments[0].state_dim).astype(np.float32)
    request[TASK_KEY] = "put the red cube in the bowl"
    if config.has_history:
        frames = config.generation.history_frames
        request[HISTORY_KEY] = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    return request


def in_process(request: dict[str, Any]) -> dict[str, Any]:
    """The same observation as the in-process policy takes it (torch, CHW, batch 1)."""
    out: dict[str, Any] = {}
    for key, value in request.items():
        if isinstance(value, np.ndarray) and value.dtype == np.uint8:
            out[key] = torch.from_numpy(value).movedim(-1, -3)[None]
        elif isinstance(value, np.ndarray):
            out[key] = torch.from_numpy(value)[None]
        else:
            out[key] = value
    return out


@contextmanager
def served(policy: F1Policy, threads: int) -> Iterator[int]:
    """``f1 serve`` of ``policy`` in a subprocess (``threads`` torch threads); yields its port."""
    with tempfile.TemporaryDirectory() as directory:
        policy.save(directory)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        command = [sys.executable, "-m", "f1.cli", "serve", directory, "--port", "0"]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        try:
            line = process.stdout.readline() if process.stdout else ""
            found = re.search(r"on ws://127\.0\.0\.1:(\d+);", line)
            if not found:
                raise RuntimeError(f"f1 serve did not start: {line!r}")
            yield int(found.group(1))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(np.ceil(0.99 * len(ordered))) - 1)]
    return {"median": round(statistics.median(ordered), 3), "p99": round(p99, 3)}


def bench_latency(policy: F1Policy, client: WebsocketClientPolicy, requests: int) -> dict[str, Any]:
    request = observation(policy, 0)
    local = in_process(request)
    for i in range(WARMUP):
        policy.plan(local, seed=i)
        client.infer(request | {"seed": i})
    direct, round_trip, paired = [], [], []
    timings: dict[str, list[float]] = {"decode_ms": [], "queue_ms": [], "infer_ms": [], "handoff_ms": []}
    for i in range(requests):
        start = time.perf_counter()
        policy.plan(local, seed=i)
        direct.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        reply = client.infer(request | {"seed": i})
        round_trip.append((time.perf_counter() - start) * 1e3)
        for key in timings:
            timings[key].append(reply["server_timing"][key])
        paired.append(round_trip[-1] - reply["server_timing"]["infer_ms"])
    return {
        "request_bytes": len(packb(request | {"seed": 0})),
        "in_process_ms": summary(direct),
        "round_trip_ms": summary(round_trip),
        "overhead_ms": {
            "difference_of_medians": round(statistics.median(round_trip) - statistics.median(direct), 3),
            "paired": summary(paired),
        },
        "server_timing_ms": {key: round(statistics.median(v), 3) for key, v in timings.items()},
    }


def bench_checks_only(policy: F1Policy, client: WebsocketClientPolicy, requests: int) -> dict[str, float]:
    """Round trips of a request refused by the last check of ``parse_request``."""
    frames = policy.config.generation.history_frames
    request = observation(policy, 0) | {"history_is_pad": np.zeros(frames + 1, dtype=bool)}
    times = []
    for i in range(WARMUP + requests):
        start = time.perf_counter()
        try:
            client.infer(request)
        except RuntimeError as error:  # openpi-client raises the error line
            if "history_is_pad" not in str(error):
                raise
        else:
            raise RuntimeError("the server accepted a history_is_pad of the wrong length")
        if i >= WARMUP:
            times.append((time.perf_counter() - start) * 1e3)
    return summary(times)


def bench_code(policy: F1Policy, repeats: int = 2000) -> dict[str, float]:
    """Microseconds of the server's own code per request (hot loop, median of 5 batches)."""
    request = observation(policy, 0) | {"seed": 0}
    frame = packb(request)
    decoded = unpackb(frame)
    config = policy.config
    actions = np.zeros((config.action.chunk_size, config.embodiments[0].action_dim), np.float32)
    reply = {
        "actions": actions,
        "embodiment": "e",
        "mode": "chunk",
        "server_timing": dict.fromkeys("abcd", 1.0),
    }
    steps = {
        "unpackb": lambda: unpackb(frame),
        "parse_request": lambda: parse_request(decoded, policy.config),
        "packb_reply": lambda: packb(reply),
    }
    out = {}
    for name, step in steps.items():
        batches = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats // 5):
                step()
            batches.append((time.perf_counter() - start) / (repeats // 5) * 1e6)
        out[name] = round(statistics.median(batches), 1)
    return out


def bench_throughput(policy: F1Policy, port: int, clients: int, total: int) -> float:
    """Requests per second with ``clients`` clients sending ``total`` requests in all."""
    request = observation(policy, 1)
    connections = [WebsocketClientPolicy("127.0.0.1", port) for _ in range(clients)]
    for connection in connections:
        connection.infer(request | {"seed": 0})
    barrier = threading.Barrier(clients + 1)
    share = [total // clients + (i < total % clients) for i in range(clients)]

    def run(connection: WebsocketClientPolicy, count: int) -> None:
        barrier.wait()
        for i in range(count):
            connection.infer(request | {"seed": i})

    threads = [threading.Thread(target=run, args=(c, n)) for c, n in zip(connections, share)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return round(total / (time.perf_counter() - start), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/serve_bench.json"), help="JSON to write")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], help="presets to serve")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per preset (>= 1)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], help="concurrent clients")
    parser.add_argument("--throughput-requests", type=int, default=32, help="requests per throughput run")
    parser.add_argument("--throughput-rounds", type=int, default=3, help="runs per client count (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (shared CPU: 1)")
    args = parser.parse_args(argv)
    for flag in ("requests", "throughput_requests", "throughput_rounds", "threads"):
        if getattr(args, flag) < 1:
            parser.error(
                f"--{flag.replace('_', '-')}: expected a positive count, received {getattr(args, flag)}"
            )
    if min(args.clients) < 1:
        parser.error(f"--clients: expected positive counts, received {args.clients}")
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "machine": machine_info(torch.device("cpu")),
        "settings": vars(args) | {"out": str(args.out), "warmup": WARMUP},
        "presets": {},
    }
    print(
        "ms: median / p99; overhead: difference of medians; paired: round trip - server infer_ms; "
        "checks only: a request refused by the last check"
    )
    print(HEADER)
    for name in args.presets:
        torch.manual_seed(0)
        policy = F1Policy(preset(name)).eval()
        with served(policy, args.threads) as port:
            client = WebsocketClientPolicy("127.0.0.1", port)
            entry = bench_latency(policy, client, args.requests)
            if policy.config.has_history:
                entry["checks_only_round_trip_ms"] = bench_checks_only(policy, client, args.requests)
            entry["code_us"] = bench_code(policy)
            rates: dict[int, list[float]] = {k: [] for k in args.clients}
            for _ in range(args.throughput_rounds):
                for k in rates:
                    rates[k].append(bench_throughput(policy, port, k, args.throughput_requests))
            entry["throughput_rps"] = {str(k): round(statistics.median(v), 2) for k, v in rates.items()}
            entry["throughput_rps_runs"] = {str(k): v for k, v in rates.items()}
        report["presets"][name] = entry
        print_row(name, entry)
    report["machine"]["load_average_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, entry in report["presets"].items():
        print(f"{name}: server code per request (us): {entry['code_us']}")
    print(f"wrote {args.out}")
    return 0


HEADER = (
    f"{'preset':8s} {'in-process':>17s} {'round trip':>17s} {'overhead':>8s} {'paired':>15s} "
    f"{'checks only':>15s} {'decode':>7s} {'queue':>6s} {'handoff':>7s}  throughput (req/s)"
)


def print_row(name: str, entry: dict[str, Any]) -> None:
    local, trip, paired = entry["in_process_ms"], entry["round_trip_ms"], entry["overhead_ms"]["paired"]
    timing = entry["server_timing_ms"]
    checks = entry.get("checks_only_round_trip_ms", {"median": math.nan, "p99": math.nan})
    rates = ", ".join(f"{k}: {v}" for k, v in entry["throughput_rps"].items())
    print(
        f"{name:8s} {local['median']:8.2f}/{local['p99']:8.2f} {trip['median']:8.2f}/{trip['p99']:8.2f} "
        f"{entry['overhead_ms']['difference_of_medians']:8.2f} {paired['median']:7.2f}/{paired['p99']:7.2f} "
        f"{checks['median']:7.2f}/{checks['p99']:7.2f} "
        f"{timing['decode_ms']:7.2f} {timing['queue_ms']:6.2f} {timing['handoff_ms']:7.2f}  {rates}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
