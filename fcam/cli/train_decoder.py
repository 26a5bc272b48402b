"""fcam-train-decoder: train the F-CAM U-Net decoder on top of a frozen classifier from seeds
of its CAM, a dense CRF loss and an absolute size constraint."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcam.cli.common import add_config_args, run_cli
from fcam.config import load_config
from fcam.engine.distributed import cleanup_distributed, setup_distributed
from fcam.engine.loaders import split_metadata
from fcam.engine.seeding import seed_everything
from fcam.engine.tasks import DecoderTask, load_classifier
from fcam.engine.trainer import fit, prepare_run_dir
from fcam.errors import FcamError


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fcam-train-decoder", description=__doc__)
    add_config_args(parser)
    parser.add_argument("--classifier", required=True, help="checkpoint written by fcam-train-cls (best.pt)")
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
        classifier, cls_cfg = load_classifier(args.classifier, ctx.device)
        if cls_cfg.model.backbone != cfg.model.backbone:
            raise FcamError(f"--classifier {args.classifier} is a {cls_cfg.model.backbone} classifier but config key "
                            f"'model.backbone' is {cfg.model.backbone}")
        train_meta = split_metadata(cfg, cfg.data.train_split)
        val_meta = split_metadata(cfg, cfg.data.val_split)
        task = DecoderTask(cfg, ctx, train_meta, val_meta, classifier)
        summary = fit(task, ctx, run_dir, cfg.fcam.epochs, cfg.to_dict(), args.resume)
        if ctx.is_main:
            best = summary["best"]
            print(f"best F-CAM {best['metric']} {best['score']:.2f} at epoch {best['epoch']}; "
                  f"checkpoints in {run_dir}", file=sys.stderr)
    finally:
        cleanup_distributed()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(main_, argv)


if __name__ == "__main__":
    sys.exit(main())
