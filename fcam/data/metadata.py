"""Readers for the wsolevaluation metadata layout (Choe et al., CVPR 2020).

``<metadata_root>/<dataset>/<split>/`` holds four comma-separated text files:
``image_ids.txt``, ``class_labels.txt``, ``image_sizes.txt`` and ``localization.txt``.
``<dataset>`` is any folder name; the kind of ground truth comes from ``localization.txt``
itself: ``image_id,x0,y0,x1,y1`` rows are boxes, ``image_id,mask_path,ignore_path`` rows are
masks, and an empty file (a training split) has none. Every record is checked; a bad one
raises :class:`FcamError` naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcam.errors import FcamError

DATASETS: dict[str, str] = {
    "CUB": "CUB-200-2011: 200 classes, boxes; val is CUBV2 (5 images per class)",
    "ILSVRC": "ImageNet-1k: 1000 classes, boxes; val is ImageNetV2 (10 per class), test is ILSVRC2012 val",
    "OpenImages": "OpenImages30k: 100 classes, instance masks with ignore masks",
}
"""The datasets whose wsolevaluation metadata is used as it is, for help texts. Any other
folder name works the same way (``fcam-prepare`` writes one from your own images)."""

_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")


@dataclass(frozen=True)
class Metadata:
    """One split of one dataset, as read from its four metadata files.

    ``kind`` is ``"box"``, ``"mask"`` or ``None`` when ``localization.txt`` is empty, as for
    training splits. ``sizes`` maps image id to the original ``(width, height)``; it is empty
    when ``image_sizes.txt`` is (OpenImages, ILSVRC train). ``boxes`` (box data) holds
    ``(n, 4)`` int64 arrays of inclusive ``x0, y0, x1, y1`` in original coordinates;
    ``masks`` (mask data) holds ``(instance mask paths, ignore path or None)``; the one that
    does not apply is ``None``. ``folder`` is where the files were read from, for error messages.
    """

    dataset: str
    split: str
    kind: str | None
    image_ids: list[str]
    labels: list[int]
    sizes: dict[str, tuple[int, int]]
    boxes: dict[str, np.ndarray] | None
    masks: dict[str, tuple[list[str], str | None]] | None
    folder: Path | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes implied by the labels: the largest label plus one."""
        return max(self.labels, default=-1) + 1

    def require_ground_truth(self) -> None:
        """Raise :class:`FcamError` unless the split has boxes or masks to score maps against."""
        if self.kind is None:
            where = self.folder / "localization.txt" if self.folder else f"{self.dataset}/{self.split}"
            raise FcamError(f"{where}: empty, so split '{self.split}' of {self.dataset} has no boxes or masks "
                            "to evaluate against; evaluate on an annotated split (val, test)")

    def gt_boxes(self, size: int = 224) -> list[np.ndarray]:
        """Ground-truth boxes rescaled to a ``size`` x ``size`` image, aligned with ``image_ids``.

        Each coordinate is ``int((x * size) / w)`` (``y`` with the height) computed in float64,
        the reference's order of operations: ``x * (size / w)`` rounds differently for a few boxes.
        """
        self.require_ground_truth()
        if self.boxes is None:
            raise FcamError(f"{self.folder or self.dataset}: split '{self.split}' has masks, not boxes")
        resized = []
        for image_id in self.image_ids:
            width, height = self.sizes[image_id]
            scale = np.array([width, height, width, height], dtype=np.float64)
            boxes = self.boxes[image_id].astype(np.float64)
            resized.append(((boxes * float(size)) / scale).astype(np.int64))
        return resized


def load_metadata(metadata_root: str | Path, dataset: str, split: str) -> Metadata:
    """Read and validate ``<metadata_root>/<dataset>/<split>/*.txt``."""
    folder = _split_folder(Path(metadata_root), dataset, split)
    paths = {name: folder / name for name in _FILES}
    for path in paths.values():
        if not path.is_file():
            raise FcamError(f"metadata file not found: {path}")

    image_ids = _read_image_ids(paths["image_ids.txt"])
    known = set(image_ids)
    labels = _read_labels(paths["class_labels.txt"], known)
    sizes = _read_sizes(paths["image_sizes.txt"], known)
    localization = paths["localization.txt"]
    kind = _localization_kind(localization)
    boxes = masks = None
    if kind == "box":
        boxes = _read_boxes(localization, known, sizes, paths["image_sizes.txt"])
    elif kind == "mask":
        masks = _read_masks(localization, known)
    return Metadata(
        dataset=dataset,
        split=split,
        kind=kind,
        image_ids=image_ids,
        labels=[labels[image_id] for image_id in image_ids],
        sizes=sizes,
        boxes=boxes,
        masks=masks,
        folder=folder,
    )


@dataclass
class SplitRecords:
    """The lines of one split's four metadata files, gathered while a dataset is written
    (``fcam-synth``, ``fcam-prepare``) and written by :meth:`write` in the order they came."""

    ids: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    localization: list[str] = field(default_factory=list)

    def add(self, image_id: str, label: int) -> None:
        """An image and its class."""
        self.ids.append(image_id)
        self.labels.append(f"{image_id},{label}")

    def write(self, folder: Path) -> None:
        """``folder``/{image_ids,class_labels,image_sizes,localization}.txt."""
        for name, lines in zip(_FILES, (self.ids, self.labels, self.sizes, self.localization)):
            write_lines(folder / name, lines)


def write_lines(path: Path, lines: list[str]) -> None:
    """One record per line without a trailing newline, as wsolevaluation's files (the reader takes both)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def _split_folder(metadata_root: Path, dataset: str, split: str) -> Path:
    """``<metadata_root>/<dataset>/<split>``, or an error listing what is there instead."""
    for what, name in (("dataset", dataset), ("split", split)):
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise FcamError(f"{what} name {name!r} must be a folder name (no path separator)")
    for folder, what in ((metadata_root / dataset, "dataset"), (metadata_root / dataset / split, "split")):
        if not folder.is_dir():
            parent = folder.parent
            found = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
            listing = f"{parent} holds: {', '.join(found)}" if found else f"{parent} has no {what} folder"
            raise FcamError(f"no metadata for {what} {folder.name!r}: {folder} is not a folder ({listing})")
    return metadata_root / dataset / split


def _lines(path: Path) -> list[str]:
    """The file's lines; the last one may lack its newline."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FcamError(f"cannot read {path}: {error}") from error
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # what follows a trailing newline, or an empty file
    return [line.rstrip("\r") for line in lines]


def _records(path: Path, num_fields: int, layout: str | None = None) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` for every line, each of exactly ``num_fields`` fields."""
    records = []
    for number, line in enumerate(_lines(path), start=1):
        fields = line.split(",")
        if len(fields) != num_fields or fields[0] == "":
            expected = f"{layout} ({num_fields} fields)" if layout else f"{num_fields} comma-separated fields"
            raise FcamError(f"{path}:{number}: malformed line {line!r}; expected {expected}")
        records.append((number, fields))
    return records


_LAYOUTS = {5: ("box", "image_id,x0,y0,x1,y1"), 3: ("mask", "image_id,mask_path,ignore_path")}


def _localization_kind(path: Path) -> str | None:
    """``"box"`` or ``"mask"`` from the first line's number of fields; ``None`` for an empty file."""
    lines = _lines(path)
    if not lines:
        return None
    layout = _LAYOUTS.get(len(lines[0].split(",")))
    if layout is None:
        raise FcamError(f"{path}:1: malformed line {lines[0]!r}; expected {_LAYOUTS[5][1]} (boxes) "
                        f"or {_LAYOUTS[3][1]} (masks)")
    return layout[0]


def _integer(path: Path, number: int, field: str, what: str, minimum: int) -> int:
    if not (field.isascii() and field.isdigit()) or int(field) < minimum:
        raise FcamError(f"{path}:{number}: {what} must be an integer >= {minimum}, got {field!r}")
    return int(field)


def _check_id(path: Path, number: int, image_id: str, known: set[str]) -> None:
    if image_id not in known:
        raise FcamError(f"{path}:{number}: image id {image_id!r} is not in image_ids.txt")


def _check_covers(path: Path, seen: Iterable[str], image_ids: set[str], what: str) -> None:
    missing = image_ids.difference(seen)
    if missing:
        example = sorted(missing)[0]
        raise FcamError(f"{path}: no {what} for {len(missing)} image(s) of image_ids.txt, e.g. {example!r}")


def _read_image_ids(path: Path) -> list[str]:
    image_ids: list[str] = []
    seen: set[str] = set()
    for number, (image_id,) in _records(path, 1):
        if image_id in seen:
            raise FcamError(f"{path}:{number}: duplicate image id {image_id!r}")
        seen.add(image_id)
        image_ids.append(image_id)
    if not image_ids:
        raise FcamError(f"{path}: no image ids")
    return image_ids


def _read_labels(path: Path, known: set[str]) -> dict[str, int]:
    labels: dict[str, int] = {}
    for number, (image_id, label) in _records(path, 2):
        _check_id(path, number, image_id, known)
        if image_id in labels:
            raise FcamError(f"{path}:{number}: second label for {image_id!r}")
        labels[image_id] = _integer(path, number, label, "class label", 0)
    _check_covers(path, labels, known, "class label")
    return labels


def _read_sizes(path: Path, known: set[str]) -> dict[str, tuple[int, int]]:
    sizes: dict[str, tuple[int, int]] = {}
    for number, (image_id, width, height) in _records(path, 3):
        _check_id(path, number, image_id, known)
        if image_id in sizes:
            raise FcamError(f"{path}:{number}: second size for {image_id!r}")
        sizes[image_id] = (
            _integer(path, number, width, "width", 1),
            _integer(path, number, height, "height", 1),
        )
    if sizes:
        _check_covers(path, sizes, known, "size")
    return sizes


def _read_boxes(
    path: Path, known: set[str], sizes: dict[str, tuple[int, int]], sizes_path: Path
) -> dict[str, np.ndarray]:
    records = _records(path, 5, f"{_LAYOUTS[5][1]}, like line 1")
    if not sizes:
        raise FcamError(f"{sizes_path}: empty, but {path} has boxes, which need the image sizes")
    boxes: dict[str, list[list[int]]] = {}
    for number, (image_id, *fields) in records:
        _check_id(path, number, image_id, known)
        x0, y0, x1, y1 = (_integer(path, number, field, "box coordinate", 0) for field in fields)
        width, height = sizes[image_id]
        if x1 < x0 or y1 < y0 or x1 >= width or y1 >= height:
            raise FcamError(
                f"{path}:{number}: box {x0},{y0},{x1},{y1} is not inside the {width}x{height} image "
                f"{image_id!r} with x0 <= x1 and y0 <= y1"
            )
        boxes.setdefault(image_id, []).append([x0, y0, x1, y1])
    _check_covers(path, boxes, known, "box")
    return {image_id: np.array(boxes[image_id], dtype=np.int64) for image_id in boxes}


def _read_masks(path: Path, known: set[str]) -> dict[str, tuple[list[str], str | None]]:
    records = _records(path, 3, f"{_LAYOUTS[3][1]}, like line 1")
    masks: dict[str, tuple[list[str], str | None]] = {}
    for number, (image_id, mask_path, ignore_path) in records:
        _check_id(path, number, image_id, known)
        if mask_path == "":
            raise FcamError(f"{path}:{number}: empty mask path for {image_id!r}")
        if image_id in masks:
            # Only an image's first line names its ignore mask (the reference asserts this).
            if ignore_path != "":
                raise FcamError(
                    f"{path}:{number}: second ignore path for {image_id!r}; "
                    "only the first line of an image may have one"
                )
            masks[image_id][0].append(mask_path)
        else:
            masks[image_id] = ([mask_path], ignore_path or None)
    _check_covers(path, masks, known, "mask")
    return masks
