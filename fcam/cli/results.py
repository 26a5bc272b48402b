"""fcam-results: collect evaluation folders written by fcam-eval (methods x runs x seeds) into one
table, as Markdown on stdout and, with --output, results.md, results.csv and results.tex.

Runs that differ only by train.seed are one row: mean ± sample standard deviation over them
(the 'runs' column counts them). Config keys that differ between rows become columns.

  fcam-results runs/eval_seed0 runs/eval_seed1 runs/eval_seed2 --output runs/table
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcam.cli.common import new_parser, run_cli


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser("fcam-results", __doc__)
    parser.add_argument("folders", nargs="+", help="evaluation folders (searched for metrics.json at any depth)")
    parser.add_argument("--output", help="folder for results.md, results.csv and results.tex")
    parser.add_argument("--metrics", nargs="+", metavar="KEY",
                        help="metric columns (default: the protocol's metrics any evaluation has)")
    parser.add_argument("--format", choices=("md", "csv", "tex"), default="md", help="table printed on stdout")
    return parser.parse_args(argv)


def main_(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from fcam.engine.results import FORMATS, write_results

    table = write_results(args.folders, args.output, args.metrics)
    print(FORMATS[args.format](table), end="")
    if args.output:
        print(f"wrote results.md, results.csv and results.tex in {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(main_, argv)


if __name__ == "__main__":
    sys.exit(main())
