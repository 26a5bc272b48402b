"""Best box IoUs of one score map at every threshold, with one contour search per distinct mask.

A threshold t keeps the pixels whose uint8 level exceeds ``int(t * max level)``, so a map has
at most 256 distinct masks however many thresholds there are, and thresholds sharing a mask
share its boxes. Each distinct mask gets a single OpenCV contour search (RETR_TREE, as the
reference), cropped to the mask's bounding box plus a one-pixel margin; the contours of many
masks are then turned into boxes, polygon areas and IoUs in a few array operations. The
numbers equal those of the per-threshold loop in :mod:`fcam.metrics.reference` exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

from fcam.metrics.boxes import box_iou

# Contours gathered before they are reduced to per-mask IoUs; bounds memory on noisy maps.
_CONTOURS_PER_CHUNK = 50_000


def max_ious_per_threshold(
    scoremap: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold, the best IoU against ``gt_boxes`` of (a) the box of the largest contour
    (MaxBoxAcc) and (b) any contour's box (MaxBoxAccV2); two float64 arrays shaped like ``thresholds``.
    """
    gray = (scoremap * 255).astype(np.uint8)
    cutoffs = (thresholds * gray.max()).astype(np.int64)  # int(t * max), elementwise
    # The mask gray > c depends on c only through how many pixels lie above c.
    pixels_above = gray.size - np.cumsum(np.bincount(gray.ravel(), minlength=256))
    _, first, mask_of_threshold = np.unique(pixels_above[cutoffs], return_index=True, return_inverse=True)
    levels = cutoffs[first]
    largest_iou, best_iou = _ious_per_level(gray, levels, np.asarray(gt_boxes, dtype=np.int64))
    return largest_iou[mask_of_threshold], best_iou[mask_of_threshold]


def _ious_per_level(gray: np.ndarray, levels: np.ndarray, gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = gray.shape
    rows = _first_last(gray.max(axis=1), levels)
    cols = _first_last(gray.max(axis=0), levels)
    largest, best = [], []
    contours, counts, origins = [], [], []
    for level, (y_first, y_last), (x_first, x_last) in zip(levels.tolist(), rows, cols):
        if y_first < 0:  # empty mask: no contour
            counts.append(0)
            origins.append((0, 0))
        else:
            y0, x0 = max(y_first - 1, 0), max(x_first - 1, 0)
            window = gray[y0 : min(y_last + 2, height), x0 : min(x_last + 2, width)]
            binary = cv2.threshold(window, level, 255, cv2.THRESH_BINARY)[1]
            found = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            contours.extend(found)
            counts.append(len(found))
            origins.append((x0, y0))
        if len(contours) >= _CONTOURS_PER_CHUNK:
            _reduce(contours, counts, origins, gt_boxes, width, height, largest, best)
            contours, counts, origins = [], [], []
    if counts:
        _reduce(contours, counts, origins, gt_boxes, width, height, largest, best)
    return np.concatenate(largest), np.concatenate(best)


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
    largest: list[np.ndarray],
    best: list[np.ndarray],
) -> None:
    """Append, per mask, the IoU of its largest contour's box and the best IoU of all its boxes."""
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
    best.append(np.maximum.reduceat(ious, slot_starts))
    # The reference keeps max(contours, key=cv2.contourArea): the first contour of largest area.
    largest_area = np.repeat(np.maximum.reduceat(twice_area, slot_starts), slots)
    index = np.arange(len(twice_area))
    first_largest = np.minimum.reduceat(np.where(twice_area == largest_area, index, len(index)), slot_starts)
    largest.append(ious[first_largest])
