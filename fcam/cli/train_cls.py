"""fcam-train-cls: train a WSOL classifier (encoder + GAP + linear) whose CAMs are scored on
the validation split every epoch; the best epoch by localization is kept."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcam.cli.common import add_config_args, run_cli
from fcam.config import load_config
from fcam.engine.distributed import cleanup_distributed, setup_distributed
from fcam.engine.loaders import num_classes, split_metadata
from fcam.engine.seeding import seed_everything
from fcam.engine.tasks import ClassifierTask
from fcam.engine.trainer import fit, prepare_run_dir


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fcam-train-cls", description=__doc__)
    add_config_args(parser)
    parser.add_argument("--output", required=True, help="run directory (checkpoints, log, config)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from last.pt")
    parser.add_argument("--overwrite", action="store_true", help="start over in an --output that holds a run")
    return parser.parse_args(argv)


def main_(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    ctx = setup_distributed(cfg.device)
    try:
        run_dir = prepare_run_dir(args.output, args.resume, args.overwrite, create=ctx.is_main)
        seed_everything(cfg.train.seed, ctx.rank)
        train_meta = split_metadata(cfg, cfg.data.train_split)
        val_meta = split_metadata(cfg, cfg.data.val_split)
        task = ClassifierTask(cfg, ctx, train_meta, val_meta, num_classes(cfg, train_meta))
        summary = fit(task, ctx, run_dir, cfg.train.epochs, cfg.to_dict(), args.resume)
        if ctx.is_main:
            best = summary["best"]
            print(f"best {best['metric']} {best['score']:.2f} at epoch {best['epoch']}; "
                  f"checkpoints in {run_dir}", file=sys.stderr)
    finally:
        cleanup_distributed()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(main_, argv)


if __name__ == "__main__":
    sys.exit(main())
