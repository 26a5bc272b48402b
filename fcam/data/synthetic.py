"""A small deterministic WSOL dataset, written in the CUB (boxes) and OpenImages (masks) layouts.

It is what the demo and the tests train on, so it is built to show what F-CAM is for. Each image
holds one to three objects of its class on a background cut from a photograph. An object is a
blob, 30-80 % of the image side when alone and smaller when there are several, textured from
another photograph and tinted with one colour that stands apart from the desaturated background:
a coherent region a dense CRF can group. Body shape, size, colour and texture follow the same
distribution for every class; the class shows only in a small part (7-11 % of the body area) of
class-specific shape and colour placed somewhere inside the body. A classifier therefore fires on
the part, so its CAM localizes the object poorly, while a decoder guided by a CRF and a size
constraint can grow the part's seed to the whole body. As in real WSOL data, some images also
hold distractors, which are in no box or mask: blobs drawn like bodies but without a part, and
part-like shapes whose (shape, colour) pair belongs to no class, on the background.

Every random draw comes from a numpy Generator seeded by ``(seed, split)``, and the
written files (PNG images and masks, text metadata) are byte-identical for the same arguments.
"""

from __future__ import annotations

import colorsys
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from tqdm import tqdm

from fcam.data.metadata import SplitRecords
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
MAX_INSTANCES = 4
_PLACEMENT_TRIES = 12  # random positions tried at each size before shrinking


@dataclass(frozen=True)
class _Object:
    """One rendered object: its full mask and its discriminative part's mask."""

    mask: np.ndarray
    part: np.ndarray


def _class_pair(label: int) -> tuple[int, int]:
    """Indices of class ``label``'s part shape and colour."""
    shapes, colours = len(_PART_SHAPES), len(_PART_COLOURS)
    return label % shapes, (label + label // shapes) % colours


def class_names(num_classes: int) -> list[str]:
    """``colour_shape`` names of the first ``num_classes`` synthetic classes."""
    shapes, colours = list(_PART_SHAPES), list(_PART_COLOURS)
    return [f"{colours[c]}_{shapes[s]}" for s, c in map(_class_pair, range(num_classes))]


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


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` dilated by ``pixels`` in every direction (a square neighbourhood)."""
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def _place(rng: np.random.Generator, outline: np.ndarray, blocked: np.ndarray,
           min_scale: float) -> np.ndarray | None:
    """Mask of ``outline`` moved to a random spot of the image that misses ``blocked``, or None.

    Tries random positions where the outline fits inside the image (1-pixel margin); after a few
    misses it shrinks the outline by 15 % and tries again, down to ``min_scale`` times its size.
    """
    height, width = blocked.shape
    scale = 1.0
    while scale >= min_scale:
        points = outline * scale
        low = 1 - points.min(axis=0)
        high = np.array([width - 2, height - 2]) - points.max(axis=0)
        if np.all(high >= low):
            for _ in range(_PLACEMENT_TRIES):
                mask = _polygon_mask(points + rng.uniform(low, high), height, width)
                if mask.any() and not (mask & blocked).any():
                    return mask
        scale *= 0.85
    return None


def _unit_area(shape: np.ndarray) -> float:
    """Area of a polygon given by its vertices (shoelace formula)."""
    return 0.5 * abs(float(np.dot(shape[:, 0], np.roll(shape[:, 1], 1))
                           - np.dot(shape[:, 1], np.roll(shape[:, 0], 1))))


def _place_part(rng: np.random.Generator, body: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Mask of the class part (7-11 % of the body area), anywhere it fits inside ``body``."""
    target = rng.uniform(0.07, 0.11) * body.sum()
    radius = np.sqrt(target / _unit_area(shape))
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


@dataclass(frozen=True)
class _Scene:
    """What one image holds besides its background: objects and distractors of each kind."""

    instances: int
    blobs: int = 0
    parts: int = 0


@dataclass(frozen=True)
class _Assets:
    """Grey-level photographs and the part (shape, RGB colour) pairs that no class uses."""

    backgrounds: list[np.ndarray]
    bodies: list[np.ndarray]
    free_pairs: list[tuple[np.ndarray, np.ndarray]]


def _free_pairs(num_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (shape, colour) pairs that none of the first ``num_classes`` classes uses."""
    used = {_class_pair(label) for label in range(num_classes)}
    shapes, colours = list(_PART_SHAPES.values()), list(_PART_COLOURS.values())
    return [(shapes[s], _rgb(*colours[c])) for s in range(len(shapes)) for c in range(len(colours))
            if (s, c) not in used]


def _draw_scene(rng: np.random.Generator, multi_fraction: float, max_instances: int,
                distractor_fraction: float, part_distractors: bool) -> _Scene:
    """Number of objects (2 twice as likely as 3, ...) and of distractors of each kind."""
    instances = 1
    if rng.uniform() < multi_fraction and max_instances > 1:
        weights = 0.5 ** np.arange(max_instances - 1)
        instances = 2 + int(rng.choice(max_instances - 1, p=weights / weights.sum()))
    if rng.uniform() >= distractor_fraction:
        return _Scene(instances)
    kind = int(rng.integers(3)) if part_distractors else 0  # blobs, parts or both
    return _Scene(instances, blobs=int(rng.integers(1, 3)) if kind != 1 else 0,
                  parts=int(rng.integers(1, 4)) if kind != 0 else 0)


def _body_colour(rng: np.random.Generator, background_colour: np.ndarray) -> np.ndarray:
    """A moderately saturated colour that stands apart from ``background_colour``."""
    while True:
        colour = _rgb(rng.uniform(), rng.uniform(0.3, 0.55), rng.uniform(0.4, 0.75))
        if np.linalg.norm(colour - background_colour) >= 70:
            return colour


def _paint_body(rng: np.random.Generator, image: np.ndarray, body: np.ndarray, colour: np.ndarray,
                photo: np.ndarray) -> None:
    """Fill ``body`` with ``colour`` modulated by a random window of ``photo``."""
    texture = _texture(rng, photo, *body.shape)
    image[body] = (colour * (1 + 0.12 * texture[..., None]))[body]


def _paint_part(image: np.ndarray, part: np.ndarray, colour: np.ndarray) -> None:
    """Fill ``part`` with ``colour`` and darken its 1-pixel rim, so its shape reads clearly."""
    image[part] = colour
    rim = part & ~cv2.erode(part.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    image[rim] = 0.25 * colour


def _render_image(rng: np.random.Generator, label: int, image_size: int, scene: _Scene, assets: _Assets
                  ) -> tuple[np.ndarray, list[_Object], list[np.ndarray]]:
    """One RGB uint8 image of class ``label``: the image, its objects and its distractors' masks.

    Objects do not touch (2-pixel gap); distractors lie outside every object's box (3-pixel
    margin) and apart from each other. An instance or distractor that finds no room, even
    shrunk, is left out, so ``objects`` may be shorter than ``scene.instances`` (rarely).
    """
    width, height = (int(round(image_size * rng.uniform(0.8, 1.2))) for _ in range(2))
    side = min(width, height)
    background_colour = _rgb(rng.uniform(), rng.uniform(0.0, 0.25), rng.uniform(0.3, 0.8))
    body_colour = _body_colour(rng, background_colour)
    shape_index, colour_index = _class_pair(label)
    shape = list(_PART_SHAPES.values())[shape_index]
    part_colour = _rgb(*list(_PART_COLOURS.values())[colour_index])

    background = _texture(rng, assets.backgrounds[rng.integers(len(assets.backgrounds))], height, width)
    image = background_colour * (1 + 0.3 * background[..., None])
    body_photo = assets.bodies[rng.integers(len(assets.bodies))]
    # Diameters in [0.3, 0.8] of the side for one object; several are smaller, but not so small
    # that their part (7-11 % of the body) loses its shape.
    low, high = (0.3, 0.8) if scene.instances == 1 else (0.25, 0.8 / np.sqrt(scene.instances))
    taken = np.zeros((height, width), dtype=bool)
    objects = []
    for diameter in np.sort(rng.uniform(low, high, scene.instances) * side)[::-1]:
        body = _place(rng, _body_outline(rng, diameter), _grow(taken, 2), min_scale=0.6)
        if body is None:
            continue
        part = _place_part(rng, body, shape)
        _paint_body(rng, image, body, body_colour, body_photo)
        _paint_part(image, part, part_colour)
        objects.append(_Object(mask=body, part=part))
        taken |= body

    blocked = np.zeros_like(taken)
    for obj in objects:
        x0, y0, x1, y1 = _tight_box(obj.mask)
        blocked[max(0, y0 - 3) : y1 + 4, max(0, x0 - 3) : x1 + 4] = True
    distractors = []
    for _ in range(scene.blobs):  # body-like, without a part
        outline = _body_outline(rng, rng.uniform(0.2, 0.45) * side)
        blob = _place(rng, outline, blocked, min_scale=0.5)
        if blob is not None:
            _paint_body(rng, image, blob, _body_colour(rng, background_colour),
                        assets.bodies[rng.integers(len(assets.bodies))])
            distractors.append(blob)
            blocked |= _grow(blob, 2)
    part_area = np.mean([obj.part.sum() for obj in objects])
    for _ in range(scene.parts):  # part-like, of a (shape, colour) pair no class uses
        part_shape, colour = assets.free_pairs[rng.integers(len(assets.free_pairs))]
        radius = np.sqrt(rng.uniform(0.8, 1.2) * part_area / _unit_area(part_shape))
        mask = _place(rng, _rotate(part_shape, rng.uniform(-0.26, 0.26)) * radius, blocked, min_scale=0.7)
        if mask is not None:
            _paint_part(image, mask, colour)
            distractors.append(mask)
            blocked |= _grow(mask, 2)
    image = cv2.GaussianBlur(image, (0, 0), 0.6) + rng.normal(0, 3, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), objects, distractors


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image[..., ::-1] if image.ndim == 3 else image  # OpenCV writes BGR
    if not cv2.imwrite(str(path), np.ascontiguousarray(pixels)):
        raise FcamError(f"cannot write {path}")


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
    two_object_fraction: float = 0.3,
    progress: bool = True,
    max_instances: int = 3,
    distractor_fraction: float = 0.5,
) -> dict[str, Path]:
    """Write the synthetic CUB-style (boxes) and OpenImages-style (masks) datasets under ``out_dir``.

    Layout: ``images/<dataset>/<image_id>``, ``metadata/<dataset>/<split>/*.txt`` and
    ``masks/OpenImages/<mask path>``. Both datasets hold the same images under their own
    naming (``001.red_disk/red_disk_test_0000.png`` and ``test/red_disk/test_0000.png``),
    so CUB's boxes are the tight boxes of OpenImages' instance masks. OpenImages ignore masks
    mark a 2-pixel band around the objects, and its ``image_sizes.txt`` is empty, as in the real
    data. ``synth.json`` records the arguments and counts of instances and distractors.

    Args:
        out_dir: output folder.
        seed: random seed; the same arguments write the same bytes.
        image_size: nominal image side; each side varies in [0.8, 1.2] times it.
        num_classes: number of classes, at most ``MAX_CLASSES``.
        num_train_per_class, num_val_per_class, num_test_per_class: images per class and split.
        two_object_fraction: fraction of images holding more than one object of their class
            (2 to ``max_instances``, each count half as likely as the one below; one box and one
            instance mask per object).
        progress: show a progress bar.
        max_instances: most objects in one image, in [1, ``MAX_INSTANCES``].
        distractor_fraction: fraction of images with distractors: 1-2 body-like blobs without a
            class part and/or 1-3 part-like shapes of a (shape, colour) pair no class uses, on the
            background outside every object's box (blobs only when all 64 pairs are classes).
            They are in no box or mask.

    Returns:
        The roots to configure: ``image_root``, ``metadata_root`` and ``mask_root``.
    """
    if not 1 <= num_classes <= MAX_CLASSES:
        raise FcamError(f"num_classes must be in [1, {MAX_CLASSES}], got {num_classes}")
    if image_size < 32:
        raise FcamError(f"image_size must be at least 32, got {image_size}")
    counts = dict(zip(SPLITS, (num_train_per_class, num_val_per_class, num_test_per_class)))
    if min(counts.values()) < 1:
        raise FcamError(f"images per class must be at least 1 in every split, got {counts}")
    for name, fraction in (("two_object_fraction", two_object_fraction),
                           ("distractor_fraction", distractor_fraction)):
        if not 0.0 <= fraction <= 1.0:
            raise FcamError(f"{name} must be in [0, 1], got {fraction}")
    if not 1 <= max_instances <= MAX_INSTANCES:
        raise FcamError(f"max_instances must be in [1, {MAX_INSTANCES}], got {max_instances}")

    out = Path(out_dir)
    roots = {"image_root": out / "images", "metadata_root": out / "metadata", "mask_root": out / "masks"}
    assets = _Assets(_load_photos(_BACKGROUND_PHOTOS), _load_photos(_BODY_PHOTOS), _free_pairs(num_classes))
    names = class_names(num_classes)
    instances, distractors = Counter(), Counter()
    with tqdm(total=num_classes * sum(counts.values()), desc="fcam-synth", unit="img",
              disable=not progress) as bar:
        for split_index, split in enumerate(SPLITS):
            rng = np.random.default_rng([seed, split_index])
            records = {dataset: SplitRecords() for dataset in ("CUB", "OpenImages")}
            for label, name in enumerate(names):
                for number in range(counts[split]):
                    scene = _draw_scene(rng, two_object_fraction, max_instances, distractor_fraction,
                                        bool(assets.free_pairs))
                    image, objects, others = _render_image(rng, label, image_size, scene, assets)
                    instances[str(len(objects))] += 1
                    distractors[str(len(others))] += 1
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
                    images_per_class=counts, two_object_fraction=two_object_fraction,
                    max_instances=max_instances, distractor_fraction=distractor_fraction,
                    images_by_instances=dict(instances), images_by_distractors=dict(distractors))
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
