"""Box geometry of the protocol: IoU of inclusive (x0, y0, x1, y1) pixel boxes."""

from __future__ import annotations

import numpy as np


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) in float64 of inclusive boxes: a box covers (x1 - x0 + 1) columns.

    A pair whose union is not positive (only possible for malformed boxes) scores 0, as in the reference.
    """
    a = np.asarray(boxes_a, dtype=np.int64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.int64)[None, :, :]
    inter_w = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    inter_h = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    intersection = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - intersection
    degenerate = union <= 0
    iou = intersection / np.where(degenerate, 1, union)
    iou[degenerate] = 0.0
    return iou
