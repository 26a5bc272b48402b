"""A small deterministic WSOL dataset, written in the CUB (boxes) and OpenImages (masks) layouts.

It is what the demo and the tests train on, so it is built to show what F-CAM is for. Each image
holds one object (sometimes two) on a background cut from a photograph. An object is a large
blob, 40-75 % of the image side, textured from another photograph and tinted with one colour that
stands apart from the desaturated background: a coherent region a dense CRF can group. Body
shape, size, colour and texture follow the same distribution for every class; the class shows
only in a small part (7-11 % of the body area) of class-specific shape and colour placed
somewhere inside the body. A classifier therefore fires on the part, so its CAM localizes the
object poorly, while a decoder guided by a CRF and a size constraint can grow the part's seed
to the whole body.

Every random draw comes from a numpy Generator seeded by ``(seed, split)``, and the
written files (PNG images and masks, text metadata) are byte-identical for the same arguments.
"""

from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from tqdm import tqdm

from fcam.errors import FcamError

SPLITS = ("train", "val", "test")

# Photographs shipped inside scikit-image's wheel (no download); used as grey-level textures.
_BACKGROUND_PHOTOS = ("grass", "gravel", "brick", "moon", "camera", "clock")
_BODY_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "coins")

# Part colours (hue, saturation, value) and shapes; class c gets shape c mod 8 and a colour
# shifted by c // 8, so the 64 (shape, colour) pairs are all distinct.
_PART_COLOURS = {
    "red": (0.0, 1.0, 1.0),
    "blue": (0.62, 1.0, 1.0),
    "yellow": (0.16, 1.0, 1.0),
    "magenta": (0.83, 1.0, 1.0),
    "cyan": (0.5, 1.0, 1.0),
    "green": (0.33, 1.0, 0.85),
    "orange": (0.07, 1.0, 1.0),
    "white": (0.0, 0.0, 1.0),
}


def _regular(count: int, inner: float = 1.0) -> np.ndarray:
    """Vertices of a regular polygon (``inner`` < 1: a star alternating radii 1 and ``inner``)."""
    angles = np.pi / 2 + np.arange(count) * (2 * np.pi / count)
    radii = np.where(np.arange(count) % 2 == 1, inner, 1.0)
    return np.stack([radii * np.cos(angles), -radii * np.sin(angles)], axis=1)


_ARM = 0.34  # half-width of the cross's and the tee's bars, unit radius
_PART_SHAPES = {
    "disk": _regular(32),
    "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) / np.sqrt(2),
    "triangle": _regular(3),
    "cross": np.array(
        [[-_ARM, -1], [_ARM, -1], [_ARM, -_ARM], [1, -_ARM], [1, _ARM], [_ARM, _ARM],
         [_ARM, 1], [-_ARM, 1], [-_ARM, _ARM], [-1, _ARM], [-1, -_ARM], [-_ARM, -_ARM]]
    ),
    "star": _regular(10, inner=0.45),
    "bar": np.array([[-1, -0.3], [1, -0.3], [1, 0.3], [-1, 0.3]]) / np.hypot(1, 0.3),
    "diamond": np.array([[0, -1], [0.55, 0], [0, 1], [-0.55, 0]]),
    "tee": np.array(
        [[-0.9, -0.8], [0.9, -0.8], [0.9, -0.8 + 2 * _ARM], [_ARM, -0.8 + 2 * _ARM],
         [_ARM, 1], [-_ARM, 1], [-_ARM, -0.8 + 2 * _ARM], [-0.9, -0.8 + 2 * _ARM]]
    ),
}
MAX_CLASSES = len(_PART_SHAPES) * len(_PART_COLOURS)


@dataclass(frozen=True)
class _Object:
    """One rendered object: its full mask and its discriminative part's mask."""

    mask: np.ndarray
    part: np.ndarray


def class_names(num_classes: int) -> list[str]:
    """``colour_shape`` names of the first ``num_classes`` synthetic classes."""
    shapes, colours = list(_PART_SHAPES), list(_PART_COLOURS)
    return [
        f"{colours[(c + c // len(shapes)) % len(colours)]}_{shapes[c % len(shapes)]}"
        for c in range(num_classes)
    ]


def _load_photos(names: tuple[str, ...]) -> list[np.ndarray]:
    """Grey-level float32 versions of scikit-image's sample photographs."""
    photos = []
    for name in names:
        image = getattr(skimage.data, name)()
        if image.ndim == 3:
            image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
        photos.append(image.astype(np.float32))
    return photos


def _texture(rng: np.random.Generator, photo: np.ndarray, height: int, width: int) -> np.ndarray:
    """A random window of ``photo``, resized to ``(height, width)``, zero-mean and unit-variance."""
    zoom = rng.uniform(0.25, 0.6)
    win_h = min(photo.shape[0], int(np.ceil(height / zoom)))
    win_w = min(photo.shape[1], int(np.ceil(width / zoom)))
    top = int(rng.integers(0, photo.shape[0] - win_h + 1))
    left = int(rng.integers(0, photo.shape[1] - win_w + 1))
    window = cv2.resize(photo[top : top + win_h, left : left + win_w], (width, height),
                        interpolation=cv2.INTER_AREA)
    return (window - window.mean()) / (window.std() + 1e-6)


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return 255.0 * np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32)


def _polygon_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean mask of a filled polygon, rasterized with 1/16-pixel vertex precision."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    fixed = np.round(points * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [fixed], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    return points @ np.array([[cos, sin], [-sin, cos]])


def _body_outline(rng: np.random.Generator, diameter: float) -> np.ndarray:
    """A rotated ellipse with a wavy radius, centred on the origin, ``diameter`` across at its widest."""
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    radius = np.ones_like(angles)
    for harmonic in (2, 3, 4):
        radius += rng.uniform(0, 0.12) * np.cos(harmonic * angles + rng.uniform(0, 2 * np.pi))
    minor = rng.uniform(0.55, 1.0)
    points = _rotate(np.stack([radius * np.cos(angles), minor * radius * np.sin(angles)], 1),
                     rng.uniform(0, np.pi))
    return points * (diameter / np.max(points.max(axis=0) - points.min(axis=0)))


def _place_body(rng: np.random.Generator, outline: np.ndarray, region: tuple[int, int, int, int],
                height: int, width: int) -> np.ndarray:
    """Mask of ``outline`` moved to a random spot inside ``region`` = (x0, y0, x1, y1), shrunk to fit."""
    x0, y0, x1, y1 = region
    extent = outline.max(axis=0) - outline.min(axis=0)
    room = np.array([x1 - x0 - 2, y1 - y0 - 2], dtype=np.float64)
    outline = outline * min(1.0, float(np.min(room / extent)))
    low = np.array([x0 + 1, y0 + 1]) - outline.min(axis=0)
    high = np.array([x1 - 1, y1 - 1]) - outline.max(axis=0)
    centre = low + rng.uniform(0, 1, 2) * np.maximum(high - low, 0)
    return _polygon_mask(outline + centre, height, width)


def _place_part(rng: np.random.Generator, body: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Mask of the class part (7-11 % of the body area), anywhere it fits inside ``body``."""
    unit_area = 0.5 * abs(np.dot(shape[:, 0], np.roll(shape[:, 1], 1))
                          - np.dot(shape[:, 1], np.roll(shape[:, 0], 1)))
    target = rng.uniform(0.07, 0.11) * body.sum()
    radius = np.sqrt(target / unit_area)
    depth = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 5)
    inside = np.argwhere(depth >= radius + 1)
    if len(inside) == 0:  # a thin body: use its deepest point and a part that fits there
        inside = np.argwhere(depth == depth.max())
        radius = max(1.0, float(depth.max()) - 1)
    row, col = inside[rng.integers(len(inside))]
    outline = _rotate(shape, rng.uniform(-0.26, 0.26))
    part = _polygon_mask(outline * radius + np.array([col, row]), *body.shape) & body
    # Rasterizing adds a rim that is large for a small shape: shrink once to the target area.
    radius *= min(1.0, np.sqrt(target / part.sum()))
    return _polygon_mask(outline * radius + np.array([col, row]), *body.shape) & body


def _render_image(rng: np.random.Generator, label: int, image_size: int, two_objects: bool,
                  backgrounds: list[np.ndarray], bodies: list[np.ndarray]
                  ) -> tuple[np.ndarray, list[_Object]]:
    """One RGB uint8 image of class ``label`` and its objects."""
    width, height = (int(round(image_size * rng.uniform(0.8, 1.2))) for _ in range(2))
    side = min(width, height)
    if two_objects:  # side by side along the longer dimension, smaller
        regions = ([(0, 0, width // 2, height), (width // 2, 0, width, height)] if width >= height
                   else [(0, 0, width, height // 2), (0, height // 2, width, height)])
        diameters = [rng.uniform(0.32, 0.45) * side for _ in regions]
    else:
        regions = [(0, 0, width, height)]
        diameters = [rng.uniform(0.4, 0.75) * side]

    background_colour = _rgb(rng.uniform(), rng.uniform(0.0, 0.25), rng.uniform(0.3, 0.8))
    body_colour = _rgb(rng.uniform(), rng.uniform(0.3, 0.55), rng.uniform(0.4, 0.75))
    while np.linalg.norm(body_colour - background_colour) < 70:
        body_colour = _rgb(rng.uniform(), rng.uniform(0.3, 0.55), rng.uniform(0.4, 0.75))
    shape = list(_PART_SHAPES.values())[label % len(_PART_SHAPES)]
    colours = list(_PART_COLOURS.values())
    part_colour = _rgb(*colours[(label + label // len(_PART_SHAPES)) % len(colours)])

    background = _texture(rng, backgrounds[rng.integers(len(backgrounds))], height, width)
    image = background_colour * (1 + 0.3 * background[..., None])
    body_photo = bodies[rng.integers(len(bodies))]
    objects = []
    for region, diameter in zip(regions, diameters):
        body = _place_body(rng, _body_outline(rng, diameter), region, height, width)
        part = _place_part(rng, body, shape)
        texture = _texture(rng, body_photo, height, width)
        image[body] = (body_colour * (1 + 0.12 * texture[..., None]))[body]
        image[part] = part_colour
        rim = part & ~cv2.erode(part.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        image[rim] = 0.25 * part_colour
        objects.append(_Object(mask=body, part=part))
    image = cv2.GaussianBlur(image, (0, 0), 0.6) + rng.normal(0, 3, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), objects


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image[..., ::-1] if image.ndim == 3 else image  # OpenCV writes BGR
    if not cv2.imwrite(str(path), np.ascontiguousarray(pixels)):
        raise FcamError(f"cannot write {path}")


def _write_lines(path: Path, lines: list[str]) -> None:
    """Metadata text without a trailing newline, as in wsolevaluation's files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


@dataclass
class _SplitRecords:
    """The lines of one split's four metadata files, in the order they are generated."""

    ids: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    localization: list[str] = field(default_factory=list)

    def add(self, image_id: str, label: int) -> None:
        self.ids.append(image_id)
        self.labels.append(f"{image_id},{label}")

    def write(self, folder: Path) -> None:
        for name, lines in (("image_ids", self.ids), ("class_labels", self.labels),
                            ("image_sizes", self.sizes), ("localization", self.localization)):
            _write_lines(folder / f"{name}.txt", lines)


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def generate_synthetic(
    out_dir: str | Path,
    seed: int = 0,
    image_size: int = 96,
    num_classes: int = 4,
    num_train_per_class: int = 60,
    num_val_per_class: int = 10,
    num_test_per_class: int = 20,
    two_object_fraction: float = 0.1,
    progress: bool = True,
) -> dict[str, Path]:
    """Write the synthetic CUB-style (boxes) and OpenImages-style (masks) datasets under ``out_dir``.

    Layout: ``images/<dataset>/<image_id>``, ``metadata/<dataset>/<split>/*.txt`` and
    ``masks/OpenImages/<mask path>``. Both datasets hold the same images under their own
    naming (``001.red_disk/red_disk_test_0000.png`` and ``test/red_disk/test_0000.png``),
    so CUB's boxes are the tight boxes of OpenImages' instance masks. A fraction
    ``two_object_fraction`` of images holds two objects of its class (two boxes, two instance
    masks). OpenImages ignore masks mark a 2-pixel band around the objects, and its
    ``image_sizes.txt`` is empty, as in the real data.
    Returns the roots to configure: ``image_root``, ``metadata_root`` and ``mask_root``.
    """
    if not 1 <= num_classes <= MAX_CLASSES:
        raise FcamError(f"num_classes must be in [1, {MAX_CLASSES}], got {num_classes}")
    if image_size < 32:
        raise FcamError(f"image_size must be at least 32, got {image_size}")
    counts = dict(zip(SPLITS, (num_train_per_class, num_val_per_class, num_test_per_class)))
    if min(counts.values()) < 1:
        raise FcamError(f"images per class must be at least 1 in every split, got {counts}")
    if not 0.0 <= two_object_fraction <= 1.0:
        raise FcamError(f"two_object_fraction must be in [0, 1], got {two_object_fraction}")

    out = Path(out_dir)
    roots = {"image_root": out / "images", "metadata_root": out / "metadata", "mask_root": out / "masks"}
    backgrounds, bodies = _load_photos(_BACKGROUND_PHOTOS), _load_photos(_BODY_PHOTOS)
    names = class_names(num_classes)
    with tqdm(total=num_classes * sum(counts.values()), desc="fcam-synth", unit="img",
              disable=not progress) as bar:
        for split_index, split in enumerate(SPLITS):
            rng = np.random.default_rng([seed, split_index])
            records = {dataset: _SplitRecords() for dataset in ("CUB", "OpenImages")}
            for label, name in enumerate(names):
                for number in range(counts[split]):
                    two = bool(rng.uniform() < two_object_fraction)
                    image, objects = _render_image(rng, label, image_size, two, backgrounds, bodies)
                    cub_id = f"{label + 1:03d}.{name}/{name}_{split}_{number:04d}.png"
                    openimages_id = f"{split}/{name}/{split}_{number:04d}.png"
                    for dataset, image_id in (("CUB", cub_id), ("OpenImages", openimages_id)):
                        _write_png(roots["image_root"] / dataset / image_id, image)
                        records[dataset].add(image_id, label)
                    height, width = image.shape[:2]
                    records["CUB"].sizes.append(f"{cub_id},{width},{height}")
                    records["CUB"].localization += [
                        f"{cub_id},{x0},{y0},{x1},{y1}"
                        for x0, y0, x1, y1 in (_tight_box(obj.mask) for obj in objects)
                    ]
                    records["OpenImages"].localization += _write_masks(
                        roots["mask_root"], openimages_id, objects
                    )
                    bar.update()
            for dataset, split_records in records.items():
                split_records.write(roots["metadata_root"] / dataset / split)

    settings = dict(seed=seed, image_size=image_size, num_classes=num_classes, classes=names,
                    images_per_class=counts, two_object_fraction=two_object_fraction)
    (out / "synth.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return roots


def _write_masks(mask_root: Path, image_id: str, objects: list[_Object]) -> list[str]:
    """Write instance and ignore masks of one image; its ``localization.txt`` lines."""
    stem = image_id.rsplit(".", 1)[0]
    union = np.logical_or.reduce([o.mask for o in objects])
    band = cv2.dilate(union.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~union
    ignore_path = f"{stem}_ignore.png"
    _write_png(mask_root / "OpenImages" / ignore_path, band.astype(np.uint8) * 255)
    lines = []
    for instance, obj in enumerate(objects):
        mask_path = f"{stem}_m{instance:02d}.png"
        _write_png(mask_root / "OpenImages" / mask_path, obj.mask.astype(np.uint8) * 255)
        lines.append(f"{image_id},{mask_path},{ignore_path if instance == 0 else ''}")
    return lines
