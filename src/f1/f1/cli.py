"""The `f1` command line."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f1", description="F1 vision-language-action policy tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the main job")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        print("f1 demo: not built yet.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
