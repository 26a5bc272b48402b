"""Readers for the wsolevaluation metadata layout (SPEC section 2).

``<metadata_root>/<dataset>/<split>/`` holds four comma-separated text files:
``image_ids.txt``, ``class_labels.txt``, ``image_sizes.txt`` and ``localization.txt``.
Every record is checked; a bad one raises :class:`FcamError` naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcam.errors import FcamError

DATASETS: dict[str, str] = {"CUB": "box", "ILSVRC": "box", "OpenImages": "mask"}
"""Supported datasets and the kind of localization ground truth each one has."""

_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")


@dataclass(frozen=True)
class Metadata:
    """One split of one dataset, as read from its four metadata files.

    ``sizes`` maps image id to the original ``(width, height)``; it is empty when
    ``image_sizes.txt`` is (OpenImages, ILSVRC train). ``boxes`` (box datasets) holds
    ``(n, 4)`` int64 arrays of inclusive ``x0, y0, x1, y1`` in original coordinates;
    ``masks`` (mask datasets) holds ``(instance mask paths, ignore path or None)``.
    Both are ``None`` when ``localization.txt`` is empty, as for training splits.
    ``folder`` is where the files were read from, for error messages.
    """

    dataset: str
    split: str
    kind: str
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

    def gt_boxes(self, size: int = 224) -> list[np.ndarray]:
        """Ground-truth boxes rescaled to a ``size`` x ``size`` image, aligned with ``image_ids``.

        Each coordinate is ``int((x * size) / w)`` (``y`` with the height) computed in float64,
        the reference's order of operations: ``x * (size / w)`` rounds differently for a few boxes.
        """
        if self.boxes is None:
            raise FcamError(
                f"{self.dataset}/{self.split}: no boxes (localization.txt is empty or the dataset has masks)"
            )
        resized = []
        for image_id in self.image_ids:
            width, height = self.sizes[image_id]
            scale = np.array([width, height, width, height], dtype=np.float64)
            boxes = self.boxes[image_id].astype(np.float64)
            resized.append(((boxes * float(size)) / scale).astype(np.int64))
        return resized


def load_metadata(metadata_root: str | Path, dataset: str, split: str) -> Metadata:
    """Read and validate ``<metadata_root>/<dataset>/<split>/*.txt``."""
    if dataset not in DATASETS:
        raise FcamError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    folder = Path(metadata_root) / dataset / split
    paths = {name: folder / name for name in _FILES}
    for path in paths.values():
        if not path.is_file():
            raise FcamError(f"metadata file not found: {path}")

    image_ids = _read_image_ids(paths["image_ids.txt"])
    known = set(image_ids)
    labels = _read_labels(paths["class_labels.txt"], known)
    sizes = _read_sizes(paths["image_sizes.txt"], known)
    kind = DATASETS[dataset]
    localization = paths["localization.txt"]
    boxes = masks = None
    if kind == "box":
        boxes = _read_boxes(localization, known, sizes, paths["image_sizes.txt"])
    else:
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


def _records(path: Path, num_fields: int) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` for every line; the last line may lack its newline."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FcamError(f"cannot read {path}: {error}") from error
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # what follows a trailing newline, or an empty file
    records = []
    for number, line in enumerate(lines, start=1):
        fields = line.rstrip("\r").split(",")
        if len(fields) != num_fields or fields[0] == "":
            raise FcamError(
                f"{path}:{number}: malformed line {line!r}; expected {num_fields} comma-separated fields"
            )
        records.append((number, fields))
    return records


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
) -> dict[str, np.ndarray] | None:
    records = _records(path, 5)
    if not records:
        return None
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


def _read_masks(path: Path, known: set[str]) -> dict[str, tuple[list[str], str | None]] | None:
    records = _records(path, 3)
    if not records:
        return None
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
