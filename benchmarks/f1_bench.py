"""F1 policy benchmark: exactly `f1 bench` (per-module latency, cached vs recomputed inference, parameters
and FLOPs per preset), runnable from a checkout:

    python benchmarks/f1_bench.py --out f1_bench.json [--presets tiny small] [--repeats 5] [--threads 1]
"""

import sys

from f1.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
