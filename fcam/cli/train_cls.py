"""fcam-train-cls: train a WSOL classifier (encoder + GAP + linear) whose CAMs are scored on
the validation split every epoch; the best epoch by localization is kept."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Sequence

from fcam.cli.common import add_config_args, add_run_args, new_parser, run_cli, warn
from fcam.config import TRAIN_CLS, Config, ignored_overrides, load_config

if TYPE_CHECKING:
    from fcam.engine.distributed import DistContext
    from fcam.engine.tasks import ClassifierTask


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser("fcam-train-cls", __doc__)
    add_config_args(parser)
    add_run_args(parser)
    return parser.parse_args(argv)


def make_task(cfg: Config, ctx: DistContext) -> ClassifierTask:
    from fcam.engine.loaders import num_classes, split_metadata
    from fcam.engine.tasks import ClassifierTask

    train_meta = split_metadata(cfg, cfg.data.train_split)
    val_meta = split_metadata(cfg, cfg.data.val_split)
    return ClassifierTask(cfg, ctx, train_meta, val_meta, num_classes(cfg, train_meta))


def main_(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    for message in ignored_overrides(args.overrides, TRAIN_CLS):
        warn(message)
    from fcam.engine.trainer import run_training

    run_training(cfg, args.output, args.resume, args.overwrite, TRAIN_CLS, make_task)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(main_, argv)


if __name__ == "__main__":
    sys.exit(main())
