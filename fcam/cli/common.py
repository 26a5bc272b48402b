"""What every command shares: turning FcamError into a one-line message and exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from fcam.errors import FcamError


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command's body; a user error prints ``error: <message>`` on stderr and returns 2."""
    try:
        return int(main(argv) or 0)
    except FcamError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--set KEY=VALUE ...`` (repeatable), as every training command takes."""
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set train.lr=0.01 model.backbone=vgg16")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """``--output RUN_DIR``, ``--resume`` and ``--overwrite``, as every training command takes."""
    parser.add_argument("--output", required=True, help="run directory (checkpoints, log, config)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from last.pt")
    parser.add_argument("--overwrite", action="store_true", help="start over in an --output that holds a run")


def one_line(message: str) -> str:
    """The user's message alone: an error re-raised from a DataLoader worker carries the
    worker's traceback text, whose last line is the original message."""
    if "Original Traceback" in message:
        message = message.strip().splitlines()[-1].split("FcamError: ", 1)[-1]
    return message.splitlines()[0] if message else message
