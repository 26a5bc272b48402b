"""fcam-train-cls: train a WSOL classifier (encoder + GAP + linear) whose CAMs are scored on
the validation split every epoch; the best epoch by localization is kept."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcam.cli.common import add_config_args, add_run_args, run_cli
from fcam.config import Config, load_config
from fcam.engine.distributed import DistContext
from fcam.engine.loaders import num_classes, split_metadata
from fcam.engine.tasks import ClassifierTask
from fcam.engine.trainer import run_training


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fcam-train-cls", description=__doc__)
    add_config_args(parser)
    add_run_args(parser)
    return parser.parse_args(argv)


def make_task(cfg: Config, ctx: DistContext) -> ClassifierTask:
    train_meta = split_metadata(cfg, cfg.data.train_split)
    val_meta = split_metadata(cfg, cfg.data.val_split)
    return ClassifierTask(cfg, ctx, train_meta, val_meta, num_classes(cfg, train_meta))


def main_(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    run_training(cfg, args.output, args.resume, args.overwrite, cfg.train.epochs, make_task)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(main_, argv)


if __name__ == "__main__":
    sys.exit(main())
