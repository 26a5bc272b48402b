"""fcam-prepare: turn your own images (one folder per class) and their boxes or masks into the
wsolevaluation layout that fcam-train-cls, fcam-train-decoder and fcam-eval read.

  fcam-prepare --images IMAGES --boxes boxes.csv --dataset Birds --out data/birds
  fcam-prepare --images IMAGES --masks masks/ --dataset Cells --out data/cells --splits splits.csv

Then train with data.dataset=NAME data.root=OUT/images data.metadata_root=OUT/metadata
data.mask_root=OUT/masks (the command prints them).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcam.cli.common import run_cli

FORMATS = """\
input formats (UTF-8 CSV with a header line; image paths are relative to --images):
  --images IMAGES      IMAGES/<class>/<file>: one folder per class (sub-folders allowed);
                       labels 0..K-1 follow the sorted class names (written to
                       OUT/metadata/NAME/class_names.txt). Suffixes: .jpg .jpeg .png .bmp
                       .webp .tif .tiff .gif. Paths may not contain a comma.
  --boxes CSV          image,x0,y0,x1,y1   e.g.  cat/0001.jpg,12,30,199,140
                       one row per box (several rows for several objects); integer,
                       inclusive pixel coordinates in the image as stored (EXIF rotation
                       is not applied): 0 <= x0 <= x1 < width, 0 <= y0 <= y1 < height.
  --masks CSV          image,mask  or  image,mask,ignore
                       e.g.  cat/0001.jpg,m/0001_a.png,m/0001_ignore.png
                       one row per object mask; mask paths relative to the CSV's folder;
                       PNGs of the image's size, non-zero = object. The optional ignore mask
                       (pixels left out of PxAP) is one per image: leave the column empty
                       or repeat the same path on the image's other rows.
  --masks FOLDER       FOLDER/<class>/<name>.png is the mask of IMAGES/<class>/<name>.<suffix>,
                       FOLDER/<class>/<name>_ignore.png its optional ignore mask.
  --splits CSV         image,split   e.g.  cat/0001.jpg,test
                       every image exactly once; split names are folder names. Without it
                       the splits are drawn per class with --seed and --fractions.
Images without boxes or masks can only be in the train split, whose localization.txt stays
empty (training uses labels only); every image of the other splits needs its boxes or masks.

output (under --out): images/NAME/<image path>, metadata/NAME/<split>/{image_ids,
class_labels,image_sizes,localization}.txt, masks/NAME/... (mask data, binary 0/255 PNGs).
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fcam-prepare", description=__doc__, epilog=FORMATS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="folder of class folders holding the images")
    parser.add_argument("--dataset", required=True, help="dataset name: its folder under images/, metadata/, masks/")
    parser.add_argument("--out", required=True, help="output folder (images/, metadata/, masks/)")
    annotations = parser.add_mutually_exclusive_group(required=True)
    annotations.add_argument("--boxes", metavar="CSV", help="boxes: image,x0,y0,x1,y1")
    annotations.add_argument("--masks", metavar="CSV_OR_FOLDER", help="masks: CSV image,mask[,ignore] or a folder")
    parser.add_argument("--splits", metavar="CSV", help="given splits: image,split (default: drawn per class)")
    parser.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"),
                        help="fractions of each class drawn for train, val and test (default 0.7 0.15 0.15; "
                             "val and test get at least one image per class, drawn among annotated images)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split draw (default 0): same seed, same splits")
    parser.add_argument("--link", choices=("copy", "symlink", "hardlink"), default="copy",
                        help="how images get into OUT/images/NAME (default copy)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT/{images,metadata,masks}/NAME")
    return parser.parse_args(argv)


def main_(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from fcam.data.prepare import prepare_dataset

    summary = prepare_dataset(args.images, args.out, args.dataset, boxes=args.boxes, masks=args.masks,
                              splits=args.splits, fractions=tuple(args.fractions), seed=args.seed,
                              link=args.link, overwrite=args.overwrite)
    what = "boxes" if args.boxes else "masks"
    for split, counts in summary.items():
        print(f"{split}: {counts['images']} images, {counts['classes']} classes, {counts['annotations']} {what}")
    print(f"train with: --set data.dataset={args.dataset} data.root={args.out}/images "
          f"data.metadata_root={args.out}/metadata data.mask_root={args.out}/masks")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(main_, argv)


if __name__ == "__main__":
    sys.exit(main())
