"""Command line: ``python -m stagewidget demo``."""

from __future__ import annotations

import argparse
import sys

from .demo import build_pipeline


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m stagewidget")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo pipeline with the text view")
    demo.add_argument("--out", default=None, help="directory for the model file")
    demo.add_argument("--rows", type=int, default=60_000)
    demo.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    if args.command == "demo":
        pipe = build_pipeline(rows=args.rows, epochs=args.epochs)
        path = pipe.run(args.out)
        print(f"model written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
