"""fcam-train-decoder: train the F-CAM U-Net decoder on top of a frozen classifier from seeds
of its CAM, a dense CRF loss and an absolute size constraint."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import TYPE_CHECKING, Sequence

from fcam.cli.common import add_config_args, add_run_args, new_parser, run_cli, warn
from fcam.config import TRAIN_DECODER, Config, ignored_overrides, load_config
from fcam.errors import FcamError

if TYPE_CHECKING:
    from fcam.engine.distributed import DistContext
    from fcam.engine.tasks import DecoderTask


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser("fcam-train-decoder", __doc__)
    add_config_args(parser)
    parser.add_argument("--classifier", required=True, help="checkpoint written by fcam-train-cls (best.pt)")
    add_run_args(parser)
    return parser.parse_args(argv)


def make_task(classifier_path: str, cfg: Config, ctx: DistContext) -> DecoderTask:
    from fcam.engine.loaders import split_metadata
    from fcam.engine.tasks import DecoderTask, load_classifier

    classifier, cls_cfg = load_classifier(classifier_path, ctx.device)
    if cls_cfg.model.backbone != cfg.model.backbone:
        raise FcamError(f"--classifier {classifier_path} is a {cls_cfg.model.backbone} classifier but config key "
                        f"'model.backbone' is {cfg.model.backbone}")
    train_meta = split_metadata(cfg, cfg.data.train_split)
    val_meta = split_metadata(cfg, cfg.data.val_split)
    return DecoderTask(cfg, ctx, train_meta, val_meta, classifier)


def main_(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    for message in ignored_overrides(args.overrides, TRAIN_DECODER):
        warn(message)
    from fcam.engine.trainer import run_training

    run_training(cfg, args.output, args.resume, args.overwrite, TRAIN_DECODER, partial(make_task, args.classifier))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(main_, argv)


if __name__ == "__main__":
    sys.exit(main())
