"""Boxes of the contours of every threshold mask of a uint8 map, from one pass over its pixels.

The box metrics threshold a map at up to 256 levels and take, per mask ``gray > c``, the boxes of
the contours OpenCV's ``findContours(RETR_TREE)`` finds (Suzuki & Abe, 1985): one outer border per
8-connected foreground component and one hole border per 4-connected background component that
does not reach the image's edge (OpenCV reads outside the image as background). Masks shrink as
the level rises, so every level's components come out of one union-find over the pixels taken by
decreasing level (a max-tree), and the holes out of one over the background taken by increasing
level. What a border follower returns is then known without following any border:

- an outer border passes through its component's extreme pixels: its box is the component's box;
- a hole border runs over the foreground pixels 4-adjacent to the hole: its box is the hole's box
  grown by one pixel on each side;
- ``cv2.contourArea`` of an outer border, the shoelace area of the polygon through its pixels'
  centres, is the area of the component with its holes filled, counted on 2x2 pixel quads: a quad
  with 4 filled pixels adds 1, one with 3 adds 1/2 (the triangle the border cuts off), fewer add 0.
  A pixel is filled at level ``c`` when every 4-path from it to the image's edge meets a pixel
  above ``c``: the minimax of ``gray`` along paths to the edge (a priority flood) is above ``c``.

The largest contour of a mask (MaxBoxAcc) is then the filled component of largest area. OpenCV
breaks ties by the order it finds borders in; where components of different boxes tie, the level is
flagged and the caller asks OpenCV. ``tests/test_metrics.py`` checks all of this against OpenCV at
every level of random, binary, few-level and noisy maps.
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"cache": True, "nogil": True}
_NO_BOXES = np.zeros((0, 4), dtype=np.int64)


def level_ious(
    gray: np.ndarray, levels: np.ndarray, gt_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per level of ``levels`` (decreasing), the best IoU with ``gt_boxes`` of the largest contour's
    box and of any contour's box of the mask ``gray > c``.

    Returns (largest IoU, best IoU, tied, empty): ``tied`` marks levels whose largest contour ties
    with one of another box (OpenCV's order decides there, so the IoU given is not to be used);
    ``empty`` marks masks without any pixel (IoUs 0 here; the reference scores the box [0, 0, 0, 0]).
    """
    gray, levels, gt_boxes = _checked(gray, levels, gt_boxes)
    hole_best = _sweep(*_inverted(gray, levels), gt_boxes, False, True, True, False, False)[0][::-1]
    filled = filled_levels(gray)
    if np.array_equal(filled, gray):  # no hole at any level: one sweep gives both
        best, largest_iou, _, _, twice_area, tied = _sweep(gray, levels, gt_boxes, True, True, False, True, False)
    else:
        best = _sweep(gray, levels, gt_boxes, True, True, False, False, False)[0]
        _, largest_iou, _, _, twice_area, tied = _sweep(filled, levels, gt_boxes, True, False, False, True, False)
    return largest_iou, np.maximum(best, hole_best), tied, twice_area < 0


def level_boxes(gray: np.ndarray, levels: np.ndarray) -> dict[str, np.ndarray]:
    """The boxes behind :func:`level_ious`, to inspect what the metric sees at each level.

    Returns ``outer`` and ``holes``: reference boxes (x0, y0, min(x1 + 1, W - 1), min(y1 + 1, H - 1))
    of the outer and hole borders, level after level, with ``outer_counts`` and ``hole_counts`` per
    level; ``largest``: per level the box of the largest contour (zeros for an empty mask);
    ``twice_area``: twice its polygon area (-1 for an empty mask); ``tied`` as in :func:`level_ious`.
    """
    gray, levels, none = _checked(gray, levels, _NO_BOXES)
    _, _, outer_counts, outer, _, _ = _sweep(gray, levels, none, True, True, False, False, True)
    _, _, hole_counts, holes, _, _ = _sweep(*_inverted(gray, levels), none, False, True, True, False, True)
    _, _, counts, boxes, twice_area, tied = _sweep(filled_levels(gray), levels, none, True, False, False, True, True)
    largest = np.zeros((len(levels), 4), dtype=np.int64)
    largest[counts > 0] = boxes
    # The hole sweep ran upwards; put its levels back in the order of ``levels``.
    starts = np.cumsum(hole_counts) - hole_counts
    order = [np.arange(start, start + count) for start, count in zip(starts[::-1], hole_counts[::-1])]
    holes = holes[np.concatenate(order)] if order else holes
    return {"outer": outer, "outer_counts": outer_counts, "holes": holes, "hole_counts": hole_counts[::-1].copy(),
            "largest": largest, "twice_area": twice_area, "tied": tied}


def _checked(gray, levels, gt_boxes):
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"expected uint8 levels (H, W), got {gray.dtype} {gray.shape}")
    levels = np.ascontiguousarray(levels, dtype=np.int64)
    if (np.diff(levels) >= 0).any():
        raise ValueError("levels must decrease")
    return np.ascontiguousarray(gray), levels, np.ascontiguousarray(gt_boxes, dtype=np.int64).reshape(-1, 4)


def _inverted(gray: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The background ``gray <= c`` as the foreground ``255 - gray > 254 - c``, levels decreasing."""
    return (255 - gray).astype(np.uint8), np.ascontiguousarray((254 - levels)[::-1])


@numba.njit(inline="always", **_JIT)
def _iou(bx0: int, by0: int, bx1: int, by1: int, gt_boxes: np.ndarray) -> float:
    """Best IoU of one inclusive box with ``gt_boxes``, the same float64 division as ``box_iou``."""
    best = 0.0
    for g in range(gt_boxes.shape[0]):
        gx0, gy0, gx1, gy1 = gt_boxes[g, 0], gt_boxes[g, 1], gt_boxes[g, 2], gt_boxes[g, 3]
        inter = max(0, min(bx1, gx1) - max(bx0, gx0) + 1) * max(0, min(by1, gy1) - max(by0, gy0) + 1)
        union = (bx1 - bx0 + 1) * (by1 - by0 + 1) + (gx1 - gx0 + 1) * (gy1 - gy0 + 1) - inter
        if union > 0:
            best = max(best, inter / union)
    return best


@numba.njit(**_JIT)
def _sweep(values, levels, gt_boxes, eight_connected, score_all, holes, largest, record):
    """Add the pixels of ``values`` by decreasing value into a union-find of their components
    (8- or 4-connected) and, at each level of ``levels`` (decreasing), once every pixel above it
    is in, score against ``gt_boxes`` the boxes of all components (``score_all``; with ``holes``
    only those off the image's edge, grown by one pixel) and of the component of largest quad area
    (``largest``).

    Returns per level: the best IoU of all boxes, the IoU of the largest component's box, the
    number of boxes recorded, then the boxes (only if ``record``: those of ``score_all``, else the
    largest), twice the largest quad area (-1 without any component), and whether another
    component of a different box ties with the largest.
    """
    height, width = values.shape
    # A one-pixel frame that never joins: neighbours are fixed offsets, outside the image included.
    pw = width + 2
    n = (height + 2) * pw
    starts = np.zeros(257, np.int64)
    for v in values.ravel():
        starts[v + 1] += 1
    starts = np.cumsum(starts)
    # Padded indices and coordinates of the pixels by value (a counting sort).
    order = np.empty(height * width, np.int32)
    order_y, order_x = np.empty(height * width, np.int32), np.empty(height * width, np.int32)
    fill = starts[:256].copy()
    for y in range(height):
        for x in range(width):
            v = values[y, x]
            order[fill[v]], order_y[fill[v]], order_x[fill[v]] = (y + 1) * pw + x + 1, y, x
            fill[v] += 1
    if eight_connected:
        offsets = np.array([-pw - 1, -pw, -pw + 1, -1, 1, pw - 1, pw, pw + 1], np.int32)
    else:
        offsets = np.array([-pw, -1, 1, pw], np.int32)
    parent = np.arange(n).astype(np.int32)
    added = np.zeros(n, np.bool_)
    # Per root, side by side (one cache line): box x0, y0, x1, y1, twice the quad area, touches the edge.
    info = np.empty((n, 6), np.int32)
    roots = np.empty(height * width, np.int32)
    n_roots = 0
    best_iou = np.zeros(levels.size)
    largest_iou = np.zeros(levels.size)
    counts = np.zeros(levels.size, np.int64)
    twice_area = np.full(levels.size, -1, np.int64)
    tied = np.zeros(levels.size, np.bool_)
    boxes = np.empty((256 if record else 0, 4), np.int64)
    n_boxes = 0
    grow = 1 if holes else 0
    next_value = 255
    for li in range(levels.size):
        while next_value > levels[li]:
            for k in range(starts[next_value], starts[next_value + 1]):
                p, y, x = order[k], order_y[k], order_x[k]
                root = -1
                for offset in offsets:
                    q = p + offset
                    if not added[q] or parent[q] == root:
                        continue
                    while True:  # find, halving the path (no write where it is already short)
                        up = parent[q]
                        if up == q:
                            break
                        if parent[up] == up:
                            q = up
                            break
                        parent[q] = parent[up]
                        q = parent[up]
                    if root < 0 or q == root:
                        root = q
                        continue
                    keep, drop = min(q, root), max(q, root)  # the older root absorbs the newer
                    parent[drop] = keep
                    info[keep, 0] = min(info[keep, 0], info[drop, 0])
                    info[keep, 1] = min(info[keep, 1], info[drop, 1])
                    info[keep, 2] = max(info[keep, 2], info[drop, 2])
                    info[keep, 3] = max(info[keep, 3], info[drop, 3])
                    info[keep, 4] += info[drop, 4]
                    info[keep, 5] |= info[drop, 5]
                    root = keep
                added[p] = True
                on_edge = y == 0 or x == 0 or y == height - 1 or x == width - 1
                if root < 0:  # a new component
                    root = p
                    info[p, 0], info[p, 1], info[p, 2], info[p, 3], info[p, 4], info[p, 5] = x, y, x, y, 0, on_edge
                    roots[n_roots] = p
                    n_roots += 1
                else:
                    parent[p] = root
                    info[root, 0] = min(info[root, 0], x)
                    info[root, 1] = min(info[root, 1], y)
                    info[root, 2] = max(info[root, 2], x)
                    info[root, 3] = max(info[root, 3], y)
                    info[root, 5] |= on_edge
                if largest:
                    # The four 2x2 quads holding p (the frame never counts): a third filled pixel
                    # adds 1 to twice the area (a half-pixel triangle), a fourth 1 more.
                    for corner in range(4):
                        q = p - pw - 1 + (corner & 1) + (corner >> 1) * pw
                        on = added[q] + added[q + 1] + added[q + pw] + added[q + pw + 1]
                        info[root, 4] += (on == 3) + (on == 4)
            next_value -= 1
        kept = 0
        best = -1
        for r in roots[:n_roots]:
            if parent[r] == r and not (holes and info[r, 5]):
                roots[kept] = r
                kept += 1
                if best < 0 or info[r, 4] > info[best, 4]:
                    best = r
        n_roots = kept
        if record and n_boxes + n_roots > boxes.shape[0]:
            bigger = np.empty((2 * (n_boxes + n_roots), 4), np.int64)
            bigger[:n_boxes] = boxes[:n_boxes]
            boxes = bigger
        for r in roots[:n_roots]:
            # The reference box: one past the last pixel, clipped to the map.
            bx0, by0 = info[r, 0] - grow, info[r, 1] - grow
            bx1, by1 = min(info[r, 2] + 1 + grow, width - 1), min(info[r, 3] + 1 + grow, height - 1)
            if score_all:
                best_iou[li] = max(best_iou[li], _iou(bx0, by0, bx1, by1, gt_boxes))
            if largest and r == best:
                largest_iou[li] = _iou(bx0, by0, bx1, by1, gt_boxes)
            if record and (score_all or r == best):
                boxes[n_boxes, 0], boxes[n_boxes, 1], boxes[n_boxes, 2], boxes[n_boxes, 3] = bx0, by0, bx1, by1
                n_boxes += 1
                counts[li] += 1
            if largest and r != best and info[r, 4] == info[best, 4] and (
                info[r, 0] != info[best, 0] or info[r, 1] != info[best, 1]
                or info[r, 2] != info[best, 2] or info[r, 3] != info[best, 3]
            ):
                tied[li] = True
        if largest and best >= 0:
            twice_area[li] = info[best, 4]
    return best_iou, largest_iou, counts, boxes[:n_boxes], twice_area, tied


@numba.njit(**_JIT)
def filled_levels(gray: np.ndarray) -> np.ndarray:
    """Per pixel, the minimax of ``gray`` over 4-paths to the image's edge (a priority flood).

    The pixel lies inside an outer border of ``gray > c`` (in its component or in a hole of it)
    exactly when this value is above ``c``.
    """
    height, width = gray.shape
    n = gray.size
    values = gray.ravel()
    filled = np.empty(n, np.uint8)
    queued = np.zeros(n, np.bool_)
    head = np.full(256, -1, np.int64)
    link = np.empty(n, np.int64)
    for p in range(n):
        y, x = p // width, p % width
        if y == 0 or x == 0 or y == height - 1 or x == width - 1:
            v = values[p]
            queued[p] = True
            link[p] = head[v]
            head[v] = p
    for v in range(256):
        while head[v] >= 0:
            p = head[v]
            head[v] = link[p]
            filled[p] = v
            y, x = p // width, p % width
            for d in range(4):
                qy = y + (d == 0) - (d == 1)
                qx = x + (d == 2) - (d == 3)
                if 0 <= qy < height and 0 <= qx < width:
                    q = qy * width + qx
                    if not queued[q]:
                        queued[q] = True
                        w = max(v, values[q])
                        link[q] = head[w]
                        head[w] = q
    return filled.reshape(height, width)
