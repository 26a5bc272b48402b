"""Convert your own images (one folder per class) and their boxes or masks into the
wsolevaluation layout that every fcam command reads (``fcam-prepare``).

Input: ``IMAGES/<class>/<file>`` (labels 0..K-1 in sorted class-name order), and either a CSV
of boxes ``image,x0,y0,x1,y1`` or masks (a CSV ``image,mask[,ignore]`` or a folder of PNGs
named like the images). Splits are drawn per class with a seed, or read from a CSV
``image,split``. Output, under ``OUT``::

    images/<dataset>/<image_id>                    copies or links of the images
    metadata/<dataset>/<split>/{image_ids,class_labels,image_sizes,localization}.txt
    metadata/<dataset>/class_names.txt             label,class name
    masks/<dataset>/<image_id without suffix>_mask<k>.png, ..._ignore.png   (mask data)

Every input is checked before anything is written; a bad one raises :class:`FcamError`
naming the file, the line and the value.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from PIL import Image

from fcam.data.metadata import SplitRecords, write_lines
from fcam.errors import FcamError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
LINK_MODES = ("copy", "symlink", "hardlink")
TRAIN = "train"
SPLITS = (TRAIN, "val", "test")
BOX_HEADER = ("image", "x0", "y0", "x1", "y1")
SPLIT_HEADER = ("image", "split")


@dataclass
class Annotation:
    """The localization of one image: boxes ``(x0, y0, x1, y1)`` inclusive, or mask files."""

    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    masks: list[Path] = field(default_factory=list)
    ignore: Path | None = None


@dataclass(frozen=True)
class SourceImage:
    """One input image: its id (path relative to the image folder), label and size."""

    image_id: str
    label: int
    size: tuple[int, int]


def scan_images(images_dir: Path) -> tuple[list[str], dict[str, SourceImage]]:
    """Class names (sorted; label = index) and the images found under ``images_dir/<class>/``."""
    if not images_dir.is_dir():
        raise FcamError(f"--images: no such folder: {images_dir}")
    stray = [p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if stray:
        raise FcamError(f"{stray[0]}: image outside a class folder; put every image in {images_dir}/<class>/")
    classes = sorted(p.name for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FcamError(f"--images {images_dir}: no class folder (expected {images_dir}/<class>/<image>)")
    images: dict[str, SourceImage] = {}
    for label, name in enumerate(classes):
        found = sorted(p for p in (images_dir / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(images_dir).parts))
        if not found:
            raise FcamError(f"class folder {images_dir / name} holds no image ({', '.join(IMAGE_SUFFIXES)})")
        for path in found:
            image_id = path.relative_to(images_dir).as_posix()
            if "," in image_id or "\n" in image_id:
                raise FcamError(f"{path}: the metadata format cannot hold a comma or newline in an image path; "
                                "rename the file")
            images[image_id] = SourceImage(image_id, label, _image_size(path))
    return classes, images


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as error:
        raise FcamError(f"{path}: not a readable image ({error})") from error


class _Csv:
    """Rows of a small CSV with a required header, each with the line number it came from."""

    def __init__(self, path: Path, option: str, headers: tuple[tuple[str, ...], ...]) -> None:
        if not path.is_file():
            raise FcamError(f"{option}: no such file: {path}")
        self.path = path
        try:
            with path.open(newline="", encoding="utf-8-sig") as file:
                reader = csv.reader(file)
                rows = [(reader.line_num, [cell.strip() for cell in row]) for row in reader if row]
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise FcamError(f"{path}: cannot read as CSV ({error})") from error
        expected = " or ".join(repr(",".join(h)) for h in headers)
        if not rows:
            raise FcamError(f"{path}: empty; expected the header {expected}")
        number, header = rows[0]
        if tuple(header) not in headers:
            raise FcamError(f"{path}:{number}: header must be {expected}, got {','.join(header)!r}")
        self.header = tuple(header)
        self.rows = []
        for number, row in rows[1:]:
            if len(row) != len(header):
                raise FcamError(f"{path}:{number}: {len(row)} fields {','.join(row)!r}; the header has {len(header)}")
            self.rows.append((number, dict(zip(header, row))))

    def where(self, number: int) -> str:
        return f"{self.path}:{number}"


def _image_of(table: _Csv, number: int, value: str, images: dict[str, SourceImage], classes: list[str]) -> SourceImage:
    """The image a CSV cell names, or an error saying whether its class or its file is unknown."""
    if not value:
        raise FcamError(f"{table.where(number)}: empty image path")
    image_id = PurePosixPath(value).as_posix()
    if image_id in images:
        return images[image_id]
    head = image_id.split("/", 1)[0]
    if "/" not in image_id or head not in classes:
        shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
        raise FcamError(f"{table.where(number)}: image {value!r}: unknown class {head!r}; paths are "
                        f"<class>/<file> relative to --images, classes: {shown}")
    raise FcamError(f"{table.where(number)}: missing image {value!r}: no such image file under its class folder")


def _pixel(table: _Csv, number: int, name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise FcamError(f"{table.where(number)}: {name} must be a non-negative integer pixel coordinate, got {value!r}")
    return int(value)


def read_boxes(path: Path, images: dict[str, SourceImage], classes: list[str]) -> dict[str, Annotation]:
    """Boxes per image from ``image,x0,y0,x1,y1`` rows (inclusive, inside the image as stored)."""
    table = _Csv(path, "--boxes", (BOX_HEADER,))
    annotations: dict[str, Annotation] = {}
    for number, row in table.rows:
        image = _image_of(table, number, row["image"], images, classes)
        x0, y0, x1, y1 = (_pixel(table, number, name, row[name]) for name in BOX_HEADER[1:])
        width, height = image.size
        if not (x0 <= x1 < width and y0 <= y1 < height):
            raise FcamError(f"{table.where(number)}: box {x0},{y0},{x1},{y1} is outside the {width}x{height} image "
                            f"{image.image_id!r}; need 0 <= x0 <= x1 < {width} and 0 <= y0 <= y1 < {height}")
        annotations.setdefault(image.image_id, Annotation()).boxes.append((x0, y0, x1, y1))
    return annotations


def read_masks(source: Path, images: dict[str, SourceImage], classes: list[str]) -> dict[str, Annotation]:
    """Masks per image, from a CSV ``image,mask[,ignore]`` (paths relative to the CSV's folder)
    or from a folder holding ``<class>/<name>.png`` (and ``<class>/<name>_ignore.png``) for an
    image ``<class>/<name>.<suffix>``."""
    if source.is_dir():
        annotations = {}
        for image_id, image in images.items():
            stem = source / PurePosixPath(image_id).with_suffix("")
            mask, ignore = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + "_ignore.png")
            if mask.is_file():
                where = f"--masks {source}"
                annotations[image_id] = Annotation(masks=[_checked_mask(mask, image, where)],
                                                   ignore=_checked_mask(ignore, image, where)
                                                   if ignore.is_file() else None)
        return annotations
    table = _Csv(source, "--masks", (("image", "mask"), ("image", "mask", "ignore")))
    annotations = {}
    for number, row in table.rows:
        image = _image_of(table, number, row["image"], images, classes)
        where = table.where(number)
        mask = _checked_mask(source.parent / row["mask"], image, where)
        annotation = annotations.setdefault(image.image_id, Annotation())
        if mask in annotation.masks:
            raise FcamError(f"{where}: duplicate mask {row['mask']!r} for image {image.image_id!r}")
        annotation.masks.append(mask)
        if row.get("ignore"):
            ignore = _checked_mask(source.parent / row["ignore"], image, where)
            if annotation.ignore not in (None, ignore):
                raise FcamError(f"{where}: second ignore mask {row['ignore']!r} for image {image.image_id!r}; "
                                "an image has at most one")
            annotation.ignore = ignore
    return annotations


def _checked_mask(path: Path, image: SourceImage, where: str) -> Path:
    if not path.is_file():
        raise FcamError(f"{where}: mask file not found: {path}")
    size = _image_size(path)
    if size != image.size:
        raise FcamError(f"{where}: mask {path} is {size[0]}x{size[1]}, its image {image.image_id!r} is "
                        f"{image.size[0]}x{image.size[1]}")
    return path


def check_folder_name(name: str, what: str, where: str) -> str:
    """``name`` if it can be a folder name in the metadata layout (no separator, comma or newline)."""
    if not name or name in (".", "..") or any(c in name for c in "/\\,\n"):
        raise FcamError(f"{where}: {what} {name!r} must be a folder name")
    return name


def read_splits(path: Path, images: dict[str, SourceImage], classes: list[str]) -> dict[str, list[str]]:
    """Image ids per split from ``image,split`` rows; every image exactly once."""
    table = _Csv(path, "--splits", (SPLIT_HEADER,))
    seen: dict[str, int] = {}
    splits: dict[str, list[str]] = {}
    for number, row in table.rows:
        image = _image_of(table, number, row["image"], images, classes)
        if image.image_id in seen:
            raise FcamError(f"{table.where(number)}: duplicate image {image.image_id!r} (first at line "
                            f"{seen[image.image_id]})")
        seen[image.image_id] = number
        splits.setdefault(check_folder_name(row["split"], "split", table.where(number)), []).append(image.image_id)
    missing = sorted(set(images).difference(seen))
    if missing:
        raise FcamError(f"{path}: {len(missing)} image(s) under --images are in no split, e.g. {missing[0]!r}")
    return splits


def check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != 3 or any(not 0 < f < 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        shown = " ".join(f"{f:g}" for f in fractions)
        raise FcamError(f"--fractions: expected three numbers in (0, 1) summing to 1 (train val test), "
                        f"got {shown} (sum {sum(fractions):g})")


def draw_splits(images: dict[str, SourceImage], classes: list[str], annotated: set[str],
                fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Per class, ``n * fraction`` rounded half up (at least 1) annotated images for val and for
    test, drawn with ``random.Random(seed)``; the others go to train. The same inputs and seed
    give the same splits on any machine and Python version."""
    rng = random.Random(seed)
    splits: dict[str, list[str]] = {name: [] for name in SPLITS}
    for label, name in enumerate(classes):
        ids = sorted(i for i, image in images.items() if image.label == label)
        with_gt = [i for i in ids if i in annotated]
        n_val, n_test = (max(1, int(len(ids) * f + 0.5)) for f in fractions[1:])
        if len(with_gt) < n_val + n_test or len(ids) - n_val - n_test < 1:
            raise FcamError(f"class {name!r}: {len(ids)} images, {len(with_gt)} with localization; the fractions "
                            f"{' '.join(f'{f:g}' for f in fractions)} need {n_val} (val) + {n_test} (test) annotated "
                            "images and at least one left for train. Annotate more, change --fractions or pass --splits")
        with_gt = _shuffled(with_gt, rng)
        held_out = {"val": with_gt[:n_val], "test": with_gt[n_val:n_val + n_test]}
        for split, chosen in held_out.items():
            splits[split] += chosen
        taken = set(held_out["val"]) | set(held_out["test"])
        splits[TRAIN] += [i for i in ids if i not in taken]
    return splits


def _shuffled(items: list[str], rng: random.Random) -> list[str]:
    """Fisher-Yates on ``rng.random()``, whose sequence Python keeps across versions (that of
    ``random.shuffle`` is not promised)."""
    items = list(items)
    for i in range(len(items) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        items[i], items[j] = items[j], items[i]
    return items


def check_annotated(splits: dict[str, list[str]], annotated: set[str]) -> None:
    """Every image of an evaluation split (any split but train) needs its boxes or masks."""
    for split, ids in splits.items():
        if split == TRAIN:
            continue
        missing = [i for i in ids if i not in annotated]
        if missing:
            raise FcamError(f"split {split!r}: {len(missing)} image(s) without boxes or masks, e.g. {missing[0]!r}; "
                            "every image of an evaluation split needs them (only 'train' may go without)")


def prepare_dataset(images_dir: str | Path, out: str | Path, dataset: str, *, boxes: str | Path | None = None,
                    masks: str | Path | None = None, splits: str | Path | None = None,
                    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
                    link: str = "copy", overwrite: bool = False) -> dict[str, dict[str, int]]:
    """Validate the input, then write ``OUT/images``, ``OUT/metadata`` (and ``OUT/masks``) for
    ``dataset``. Returns per split the number of images, classes and annotations (boxes or masks).

    The ``train`` split gets an empty ``localization.txt`` (training uses labels only); every
    other split needs the localization of all its images.
    """
    images_dir, out = Path(images_dir), Path(out)
    check_folder_name(dataset, "dataset name", "--dataset")
    if (boxes is None) == (masks is None):
        raise FcamError("pass exactly one of --boxes CSV and --masks CSV_OR_FOLDER")
    if link not in LINK_MODES:
        raise FcamError(f"--link must be one of {', '.join(LINK_MODES)}, got {link!r}")
    if splits is None:
        check_fractions(fractions)
    targets = [out / part / dataset for part in ("images", "metadata", "masks")]
    _check_output(images_dir, targets, overwrite)

    classes, images = scan_images(images_dir)
    annotations = (read_boxes(Path(boxes), images, classes) if boxes is not None
                   else read_masks(Path(masks), images, classes))
    if splits is not None:
        chosen = read_splits(Path(splits), images, classes)
    else:
        chosen = draw_splits(images, classes, set(annotations), fractions, seed)
    check_annotated(chosen, set(annotations))

    for target in targets:
        if target.exists():
            shutil.rmtree(target)
    _place_images(images_dir, targets[0], list(images), link)
    metadata = targets[1]
    metadata.mkdir(parents=True)
    write_lines(metadata / "class_names.txt", [f"{label},{name}" for label, name in enumerate(classes)])
    summary = {}
    for split, ids in chosen.items():
        ids = sorted(ids)
        rows = [] if split == TRAIN else _localization(ids, annotations, boxes is not None, targets[2])
        SplitRecords(ids=ids, labels=[f"{i},{images[i].label}" for i in ids],
                     sizes=[f"{i},{images[i].size[0]},{images[i].size[1]}" for i in ids],
                     localization=rows).write(metadata / split)
        summary[split] = {"images": len(ids), "classes": len({images[i].label for i in ids}), "annotations": len(rows)}
    return summary


def _check_output(images_dir: Path, targets: list[Path], overwrite: bool) -> None:
    source = images_dir.resolve()
    for target in targets:
        resolved = target.resolve()
        if source == resolved or resolved in source.parents:
            raise FcamError(f"--images {images_dir} is inside the output folder {target}; write elsewhere")
        if target.exists() and not overwrite:
            raise FcamError(f"{target} exists; pass --overwrite to replace it")


def _place_images(source: Path, target: Path, image_ids: list[str], link: str) -> None:
    for image_id in image_ids:
        src, dst = source / image_id, target / image_id
        dst.parent.mkdir(parents=True, exist_ok=True)
        if link == "symlink":
            dst.symlink_to(src.resolve())
        elif link == "hardlink":
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)


def _localization(ids: list[str], annotations: dict[str, Annotation], as_boxes: bool, mask_dir: Path) -> list[str]:
    """``localization.txt`` rows; mask data also gets binary 0/255 PNGs written under ``mask_dir``."""
    rows = []
    for image_id in ids:
        annotation = annotations[image_id]
        if as_boxes:
            rows += [f"{image_id},{x0},{y0},{x1},{y1}" for x0, y0, x1, y1 in annotation.boxes]
            continue
        stem = PurePosixPath(image_id).with_suffix("").as_posix()
        ignore = ""
        if annotation.ignore is not None:
            ignore = f"{stem}_ignore.png"
            _write_binary_mask(annotation.ignore, mask_dir / ignore)
        for k, mask in enumerate(annotation.masks):
            name = f"{stem}_mask{k}.png"
            _write_binary_mask(mask, mask_dir / name)
            rows.append(f"{image_id},{name},{ignore if k == 0 else ''}")
    return rows


def _write_binary_mask(source: Path, target: Path) -> None:
    """Non-zero pixels of ``source`` (any mode, read as grey levels) become 255, the rest 0. OpenCV's
    writer filters every row with Sub, which :mod:`fcam.data.png_masks` reads back fastest."""
    with Image.open(source) as image:
        grey = np.asarray(image.convert("L"))
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), np.where(grey > 0, 255, 0).astype(np.uint8)):
        raise FcamError(f"could not write the mask {target}")
