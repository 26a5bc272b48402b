"""What every command shares: an FcamError as a one-line message and exit status 2, the
config and run-directory flags, and warnings for ``--set`` keys the command does not read.

This module and every command module import neither torch nor the rest of fcam's heavy parts:
a command's ``--help`` and its argument errors answer at once; the work imports them.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Sequence

from fcam.errors import FcamError

DEBUG_ENV = "FCAM_DEBUG"
EPILOG = (f"Errors you can fix (files, keys, values) print one line and exit with status 2; set "
          f"{DEBUG_ENV}=1 to see their traceback too.")


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command's body; a user error prints ``error: <message>`` on stderr and returns 2.

    Any other exception propagates with its traceback (it is a bug, not a user error).
    """
    try:
        return int(main(argv) or 0)
    except FcamError as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def new_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A command's parser: its module docstring as description, the error contract as epilog."""
    return argparse.ArgumentParser(prog=prog, description=doc, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--set KEY=VALUE ...`` (repeatable), as every training command takes."""
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set train.lr=0.01 model.backbone=vgg16")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """``--output RUN_DIR``, ``--resume`` and ``--overwrite``, as every training command takes."""
    parser.add_argument("--output", required=True, help="run directory (checkpoints, logs, config)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output from last.pt (its config must be unchanged but for "
                             "the epochs, data.num_workers and log.*)")
    parser.add_argument("--overwrite", action="store_true", help="start over in an --output that holds a run")


def warn(message: str) -> None:
    """A one-line warning on stderr."""
    print(f"warning: {message}", file=sys.stderr)
