"""fcam-synth: write the synthetic WSOL datasets (CUB-style boxes, OpenImages-style masks).

Then train with data.root=OUT/images, data.metadata_root=OUT/metadata, data.mask_root=OUT/masks.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcam.cli.common import new_parser, run_cli

# Images per class of each split written (train, val, test): by default and with --tiny.
_DEFAULT_COUNTS = {"train": 60, "val": 10, "test": 20}
_TINY_COUNTS = {"train": 8, "val": 2, "test": 2}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser("fcam-synth", __doc__)
    parser.add_argument("out", help="output folder (images/, metadata/, masks/ and synth.json)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same bytes")
    parser.add_argument("--image-size", type=int, default=96,
                        help="nominal image side; each side varies in [0.8, 1.2] times it (default 96)")
    parser.add_argument("--num-classes", type=int, default=4, help="number of classes (default 4)")
    parser.add_argument("--tiny", action="store_true",
                        help=f"{'/'.join(map(str, _TINY_COUNTS.values()))} images per class in train/val/test, "
                             f"for tests")
    for split, count in _DEFAULT_COUNTS.items():
        parser.add_argument(f"--{split}-per-class", type=int, default=None,
                            help=f"{split} images per class (default {count})")
    parser.add_argument("--two-object-fraction", type=float, default=0.3,
                        help="fraction of images holding more than one object, 2 to --max-instances "
                             "(default 0.3)")
    parser.add_argument("--max-instances", type=int, default=3,
                        help="most objects in one image; 3 is half as likely as 2 (default 3)")
    parser.add_argument("--distractor-fraction", type=float, default=0.5,
                        help="fraction of images with distractors: body-like blobs without a class part "
                             "and part-like shapes of no class, in no box or mask (default 0.5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    counts = [
        getattr(args, f"{split}_per_class") if getattr(args, f"{split}_per_class") is not None else default
        for split, default in (_TINY_COUNTS if args.tiny else _DEFAULT_COUNTS).items()
    ]
    from fcam.data.synthetic import class_names, generate_synthetic

    roots = generate_synthetic(
        args.out,
        seed=args.seed,
        image_size=args.image_size,
        num_classes=args.num_classes,
        num_train_per_class=counts[0],
        num_val_per_class=counts[1],
        num_test_per_class=counts[2],
        two_object_fraction=args.two_object_fraction,
        max_instances=args.max_instances,
        distractor_fraction=args.distractor_fraction,
        progress=not args.quiet,
    )
    sizes = ", ".join(f"{split} {count * args.num_classes}" for split, count in zip(_DEFAULT_COUNTS, counts))
    print(f"wrote CUB (boxes) and OpenImages (masks), {args.num_classes} classes, "
          f"~{args.image_size} px, images per split: {sizes}")
    print(f"classes: {', '.join(class_names(args.num_classes))}")
    for name, path in roots.items():
        print(f"{name}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
