"""fcam-eval: score localization with the wsolevaluation protocol (exact, fast).

Two modes:
  * saved maps of any tool:  --scoremap-root DIR --metadata-root DIR --dataset D --split S --output DIR
  * trained models:          --checkpoint CLS.pt [--decoder FCAM.pt] --method M [M ...] --split S --output DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fcam.cams.registry import CAM_METHODS
from fcam.cli.common import new_parser, run_cli
from fcam.config import load_config
from fcam.data.metadata import DATASETS
from fcam.errors import FcamError
from fcam.protocol import CAM_CURVE_INTERVAL, EVAL_SIZE


# What --method accepts: F-CAM's decoder or any registered CAM method.
MAP_METHODS = ("fcam", *CAM_METHODS)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("fcam-eval", __doc__)
    parser.add_argument("--output", required=True, help="directory for metrics.json, curves and figures")
    parser.add_argument("--split", default="test", help="metadata split to score (default: test)")
    parser.add_argument("--cam-curve-interval", type=float, default=None,
                        help=f"threshold step (default {CAM_CURVE_INTERVAL}, or the config's eval.cam_curve_interval)")
    saved = parser.add_argument_group("saved score maps")
    saved.add_argument("--scoremap-root", help="folder of <image_id>.npy score maps")
    saved.add_argument("--metadata-root", help="wsolevaluation metadata root")
    saved.add_argument("--mask-root", help="mask root (mask data): <mask_root>/<dataset>/<mask_path>")
    saved.add_argument("--dataset", help=f"dataset folder under --metadata-root: {', '.join(DATASETS)} or any other")
    saved.add_argument("--eval-size", type=int, default=EVAL_SIZE,
                       help=f"size at which maps are scored (default {EVAL_SIZE})")
    saved.add_argument("--mask-cache", metavar="DIR",
                       help="directory keeping the decoded ground-truth masks for later evaluations (mask data; "
                            "an entry is used while its PNGs are unchanged); with a model, set eval.mask_cache")
    saved.add_argument("--normalize", action="store_true", help="min-max normalize maps that are outside [0,1]")
    saved.add_argument("--num-workers", type=int, default=-1,
                       help="processes reading and scoring the maps (default -1: one per CPU of this process; "
                            "0 or 1: in this process)")
    model = parser.add_argument_group("trained models")
    model.add_argument("--config", help="YAML config (default: the one saved in the checkpoint)")
    model.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    model.add_argument("--checkpoint", help="classifier checkpoint (fcam-train-cls)")
    model.add_argument("--decoder", help="F-CAM checkpoint (fcam-train-decoder)")
    model.add_argument("--method", nargs="+", default=None, metavar="M",
                       help=f"map methods to score, any of: {', '.join(MAP_METHODS)} (scorecam costs one "
                            "forward pass per channel of the top map and image); several give comparison figures; "
                            "GradCAM++'s formula: --set cam.gradcampp_variant=paper|fcam-wsol")
    model.add_argument("--save-scoremaps", action="store_true", help="write <image_id>.npy maps")
    model.add_argument("--visualize", type=int, default=0, metavar="N", help="write N example figures per method")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def eval_saved(args: argparse.Namespace) -> int:
    for flag in ("metadata_root", "dataset"):
        if getattr(args, flag) is None:
            raise FcamError(f"--scoremap-root needs --{flag.replace('_', '-')}")
    from fcam.data import load_metadata
    from fcam.engine.report import format_table, write_report
    from fcam.engine.saved_maps import evaluate_saved_maps

    metadata = load_metadata(args.metadata_root, args.dataset, args.split)
    if args.mask_cache and metadata.kind != "mask":
        print(f"warning: --mask-cache is ignored: {args.dataset} has box annotations", file=sys.stderr)
    metrics = evaluate_saved_maps(args.scoremap_root, metadata, args.mask_root, args.eval_size,
                                  args.cam_curve_interval or CAM_CURVE_INTERVAL, args.normalize, num_workers=args.num_workers,
                                  mask_cache=args.mask_cache)
    provenance = {"method": None, "dataset": args.dataset, "split": args.split,
                  "scoremap_root": str(Path(args.scoremap_root).resolve()), "config": None}
    scalars = write_report(metrics, args.output, title=f"{args.dataset} {args.split}", provenance=provenance)
    print(format_table({str(args.scoremap_root): scalars}))
    print(f"wrote {Path(args.output) / 'metrics.json'}", file=sys.stderr)
    return 0


def check_methods(methods: list[str]) -> None:
    """FcamError naming the unknown ones among ``methods`` (fcam or a CAM method of fcam.cams)."""
    unknown = [m for m in methods if m not in MAP_METHODS]
    if unknown:
        raise FcamError(f"--method: unknown map method {', '.join(map(repr, unknown))}; expected any of "
                        f"{', '.join(MAP_METHODS)}")


def eval_models(args: argparse.Namespace) -> int:
    if not args.checkpoint and not args.decoder:
        raise FcamError("pass --scoremap-root (saved maps) or --checkpoint / --decoder (trained models)")
    methods = args.method or (["fcam"] if args.decoder else ["cam"])
    check_methods(methods)
    import torch

    from fcam.data import load_metadata
    from fcam.engine.distributed import cleanup_distributed, setup_distributed
    from fcam.engine.eval_run import evaluate_methods
    from fcam.engine.tasks import load_classifier, load_fcam

    cpu = torch.device("cpu")
    classifier, cls_cfg = load_classifier(args.checkpoint, cpu) if args.checkpoint else (None, None)
    fcam_model, fcam_cfg = load_fcam(args.decoder, cpu) if args.decoder else (None, None)
    if cls_cfg is not None and fcam_cfg is not None and cls_cfg.model.backbone != fcam_cfg.model.backbone:
        raise FcamError(f"--checkpoint is a {cls_cfg.model.backbone} classifier, --decoder a "
                        f"{fcam_cfg.model.backbone} F-CAM model")
    cfg = load_config(args.config, args.overrides, base=fcam_cfg or cls_cfg)
    if args.cam_curve_interval:
        cfg.eval.cam_curve_interval = args.cam_curve_interval
    provenance = {"dataset": cfg.data.dataset, "split": args.split, "config": cfg.to_dict(),
                  "checkpoints": {name: {"path": str(Path(path).resolve()), "config": ckpt_cfg.to_dict()}
                                  for name, path, ckpt_cfg in (("classifier", args.checkpoint, cls_cfg),
                                                               ("decoder", args.decoder, fcam_cfg)) if path}}
    ctx = setup_distributed(cfg.device)
    try:
        metadata = load_metadata(cfg.data.metadata_root, cfg.data.dataset, args.split)
        evaluate_methods(cfg, ctx, metadata, methods, Path(args.output),
                         classifier.to(ctx.device) if classifier is not None else None,
                         fcam_model.to(ctx.device) if fcam_model is not None else None,
                         args.save_scoremaps, args.visualize, provenance)
    finally:
        cleanup_distributed()
    return 0


def main_(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return eval_saved(args) if args.scoremap_root else eval_models(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(main_, argv)


if __name__ == "__main__":
    sys.exit(main())
