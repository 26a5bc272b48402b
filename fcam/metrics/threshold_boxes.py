"""Best box IoUs of one score map at every threshold, without a contour search per threshold.

A threshold t keeps the pixels whose uint8 level exceeds ``int(t * max level)``, so a map has
at most 256 distinct masks however many thresholds there are, and thresholds sharing a mask
share its boxes. The IoUs of every mask's contour boxes come from
:mod:`fcam.metrics.level_components` (one pass over the pixels per kind of contour); OpenCV is
asked only for a mask whose largest contour is tied with another of a different box, where the
order in which OpenCV lists contours decides. The numbers equal those of the per-threshold loop in
:mod:`fcam.metrics.reference` exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

from fcam.metrics.boxes import box_iou

# The reference scores a mask without any contour by the single box [0, 0, 0, 0].
_NO_CONTOUR_BOX = np.zeros((1, 4), dtype=np.int64)


def max_ious_per_threshold(
    gray: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold, the best IoU against ``gt_boxes`` of (a) the box of the largest contour
    (MaxBoxAcc) and (b) any contour's box (MaxBoxAccV2); two float64 arrays shaped like ``thresholds``.

    ``gray`` is the map's uint8 levels (:func:`fcam.metrics.scoremap.gray_levels`).
    """
    # numba takes ~0.2 s to import: only processes that score boxes pay for it, not PxAP workers.
    from fcam.metrics.level_components import level_ious

    gt_boxes = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    cutoffs = (thresholds * gray.max()).astype(np.int64)  # int(t * max), elementwise
    # The mask gray > c depends on c only through how many pixels lie above c; levels run downwards.
    pixels_above = gray.size - np.cumsum(np.bincount(gray.ravel(), minlength=256))
    _, first, mask_of_threshold = np.unique(pixels_above[cutoffs], return_index=True, return_inverse=True)
    levels = cutoffs[first]
    largest_iou, best_iou, tied, empty = level_ious(gray, levels, gt_boxes)
    for i in np.flatnonzero(tied):
        largest_iou[i] = box_iou(_opencv_largest_box(gray, int(levels[i])), gt_boxes).max()
    largest_iou[empty] = best_iou[empty] = box_iou(_NO_CONTOUR_BOX, gt_boxes).max()
    return largest_iou[mask_of_threshold], best_iou[mask_of_threshold]


def _opencv_largest_box(gray: np.ndarray, level: int) -> np.ndarray:
    """The reference box of ``max(contours, key=cv2.contourArea)`` of the mask ``gray > level``."""
    height, width = gray.shape
    contours = cv2.findContours((gray > level).astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return np.array([[x, y, min(x + w, width - 1), min(y + h, height - 1)]], dtype=np.int64)
