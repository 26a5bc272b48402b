"""Best box IoUs of one score map at every threshold, with one contour search per distinct mask.

A threshold t keeps the pixels whose uint8 level exceeds ``int(t * max level)``, so a map has
at most 256 distinct masks however many thresholds there are, and thresholds sharing a mask
share its boxes. Each distinct mask gets a single OpenCV contour search (RETR_TREE, as the
reference), cropped to the mask's bounding box plus a one-pixel margin; the contours of many
masks are then turned into boxes, polygon areas and IoUs in a few array operations. The
numbers equal those of the per-threshold loop in :mod:`fcam.metrics.reference` exactly.

Noisy maps give masks with thousands of one-pixel components and one-pixel holes, which cost
most of the contour search. When the caller only needs IoUs from ``min_iou`` up (hit or miss at
IoU thresholds) and every ground-truth box is large enough, those specks are erased first:
their boxes (at most 4x4 pixels) cannot reach ``min_iou``, and no other contour changes. A
border tracer turning around a contour pixel meets the 4-neighbours of a one-pixel hole just
before and after the hole itself, so it never steps into the filled hole; an isolated pixel
is never reached from another component and does not split the background.
"""

from __future__ import annotations

import cv2
import numpy as np

from fcam.metrics.boxes import box_iou

# Contours gathered before they are reduced to per-mask IoUs; bounds memory on noisy maps.
_CONTOURS_PER_CHUNK = 50_000
# Erasing specks costs two 3x3 filters; it pays off when the mask searched just before (the next
# higher level, levels run downwards) had this many contours.
_CONTOURS_WORTH_ERASING_SPECKS = 64
# The largest speck box: a one-pixel hole grown by one pixel on each side, one past its end.
_SPECK_BOX_AREA = 16
_EIGHT_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.uint8)
_FOUR_NEIGHBOURS = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.uint8)


def max_ious_per_threshold(
    gray: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray, min_iou: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold, the best IoU against ``gt_boxes`` of (a) the box of the largest contour
    (MaxBoxAcc) and (b) any contour's box (MaxBoxAccV2); two float64 arrays shaped like ``thresholds``.

    ``gray`` is the map's uint8 levels (:func:`fcam.metrics.scoremap.gray_levels`). IoUs of
    ``min_iou`` and above are exact; a (b) value below ``min_iou`` may come out lower than the
    reference's, never reaching ``min_iou``. With the default 0 every value is exact.
    """
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"expected uint8 levels (H, W), got {gray.dtype} {gray.shape}")
    gt_boxes = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    cutoffs = (thresholds * gray.max()).astype(np.int64)  # int(t * max), elementwise
    # The mask gray > c depends on c only through how many pixels lie above c.
    pixels_above = gray.size - np.cumsum(np.bincount(gray.ravel(), minlength=256))
    _, first, mask_of_threshold = np.unique(pixels_above[cutoffs], return_index=True, return_inverse=True)
    levels = cutoffs[first]
    gt_area = (gt_boxes[:, 2] - gt_boxes[:, 0] + 1) * (gt_boxes[:, 3] - gt_boxes[:, 1] + 1)
    # A speck box B then has IoU <= |B| / |G| < min_iou / 2 with every GT box G, rounding included.
    may_erase = min_iou > 0 and 2 * _SPECK_BOX_AREA < min_iou * gt_area.min()
    largest_iou, best_iou, largest_area, erased = _ious_per_level(gray, levels, gt_boxes, may_erase)
    # An erased isolated pixel has polygon area 0; it could only have been the largest contour
    # (the first one of area 0 in OpenCV's order) where no contour left has a positive area.
    redo = erased & (largest_area == 0)
    if redo.any():
        largest_iou[redo], best_iou[redo] = _ious_per_level(gray, levels[redo], gt_boxes, False)[:2]
    return largest_iou[mask_of_threshold], best_iou[mask_of_threshold]


def _ious_per_level(
    gray: np.ndarray, levels: np.ndarray, gt_boxes: np.ndarray, may_erase: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per level: the largest contour's IoU, the best IoU, twice the largest polygon area, specks erased."""
    height, width = gray.shape
    rows = _first_last(gray.max(axis=1), levels)
    cols = _first_last(gray.max(axis=0), levels)
    results: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    contours, counts, origins, erased = [], [], [], []
    found = ()
    for level, (y_first, y_last), (x_first, x_last) in zip(levels.tolist(), rows, cols):
        erase = may_erase and len(found) >= _CONTOURS_WORTH_ERASING_SPECKS
        if y_first < 0:  # empty mask: no contour
            found = ()
            origins.append((0, 0))
        else:
            y0, x0 = max(y_first - 1, 0), max(x_first - 1, 0)
            window = gray[y0 : min(y_last + 2, height), x0 : min(x_last + 2, width)]
            binary = cv2.threshold(window, level, 1, cv2.THRESH_BINARY)[1]
            if erase:
                binary = _without_specks(binary)
            found = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            contours.extend(found)
            origins.append((x0, y0))
        counts.append(len(found))
        erased.append(erase)
        if len(contours) >= _CONTOURS_PER_CHUNK:
            results.append(_reduce(contours, counts, origins, gt_boxes, width, height))
            contours, counts, origins = [], [], []
    if counts:
        results.append(_reduce(contours, counts, origins, gt_boxes, width, height))
    largest, best, area = (np.concatenate(parts) for parts in zip(*results))
    return largest, best, area, np.array(erased, dtype=bool)


def _without_specks(binary: np.ndarray) -> np.ndarray:
    """The 0/1 mask with isolated pixels cleared and one-pixel holes filled.

    Outside the window counts as background: it is, or it is outside the map.
    """
    border = {"borderType": cv2.BORDER_CONSTANT, "borderValue": 0}
    has_neighbour = cv2.dilate(binary, _EIGHT_NEIGHBOURS, **border)
    enclosed = cv2.erode(binary, _FOUR_NEIGHBOURS, **border)
    return (binary & has_neighbour) | enclosed


def _first_last(peaks: np.ndarray, levels: np.ndarray) -> list[tuple[int, int]]:
    """Per level, the first and last index whose peak exceeds it ((-1, -1) when none does)."""
    above = peaks[None, :] > levels[:, None]
    first = np.where(above.any(axis=1), above.argmax(axis=1), -1)
    last = len(peaks) - 1 - above[:, ::-1].argmax(axis=1)
    return list(zip(first.tolist(), last.tolist()))


def _reduce(
    contours: list[np.ndarray],
    counts: list[int],
    origins: list[tuple[int, int]],
    gt_boxes: np.ndarray,
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per mask: the IoU of its largest contour's box, the best IoU of all its boxes, twice the largest area."""
    counts = np.array(counts, dtype=np.int64)
    origins = np.array(origins, dtype=np.int64).reshape(-1, 2)
    # A mask without contour gets the box [0, 0, 0, 0] of area 0, as in the reference.
    slots = np.maximum(counts, 1)
    slot_starts = np.cumsum(slots) - slots
    is_contour = np.ones(slots.sum(), dtype=bool)
    is_contour[slot_starts[counts == 0]] = False
    boxes = np.zeros((len(is_contour), 4), dtype=np.int64)
    twice_area = np.zeros(len(is_contour), dtype=np.int64)
    if contours:
        lengths = np.fromiter(map(len, contours), dtype=np.int64, count=len(contours))
        starts = np.cumsum(lengths) - lengths
        ends = starts + lengths - 1
        points = np.concatenate(contours).reshape(-1, 2)
        offset = np.repeat(origins, counts, axis=0)
        top_left = np.minimum.reduceat(points, starts, axis=0) + offset
        bottom_right = np.maximum.reduceat(points, starts, axis=0) + offset
        # boundingRect gives (x, y, w, h); the reference box is (x, y, x + w, y + h) clipped to the map.
        boxes[is_contour] = np.concatenate([top_left, np.minimum(bottom_right + 1, [width - 1, height - 1])], axis=1)
        xs, ys = points[:, 0].astype(np.int64), points[:, 1].astype(np.int64)
        # cv2.contourArea is the shoelace area of the closed polygon; twice it is an exact integer.
        cross = np.empty_like(xs)
        cross[:-1] = xs[:-1] * ys[1:] - xs[1:] * ys[:-1]
        cross[ends] = xs[ends] * ys[starts] - xs[starts] * ys[ends]
        twice_area[is_contour] = np.abs(np.add.reduceat(cross, starts))
    ious = box_iou(boxes, gt_boxes).max(axis=1)
    best = np.maximum.reduceat(ious, slot_starts)
    # The reference keeps max(contours, key=cv2.contourArea): the first contour of largest area.
    largest_area = np.maximum.reduceat(twice_area, slot_starts)
    index = np.arange(len(twice_area))
    first_largest = np.minimum.reduceat(
        np.where(twice_area == np.repeat(largest_area, slots), index, len(index)), slot_starts
    )
    return ious[first_largest], best, largest_area
