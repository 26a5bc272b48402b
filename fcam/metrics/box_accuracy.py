"""MaxBoxAcc (V1), MaxBoxAccV2 and top-1/5 localization, accumulated batch by batch.

Per image only per-threshold hit counts are kept, so memory does not grow with the data set
and the state of several processes adds up to the state of one (all-reduce by sum).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from fcam.errors import FcamError
from fcam.metrics.counts import checked_counts
from fcam.metrics.scoremap import check_score_range, score_thresholds
from fcam.metrics.threshold_boxes import max_ious_per_threshold

V1_IOU = 50  # MaxBoxAcc and top-1/5 localization use IoU >= 0.5


class BoxEvaluator:
    """Streaming box metrics over score maps already in the boxes' space (e.g. 224x224, in [0, 1]).

    The heavy work (OpenCV contour search) releases the GIL, so images of a batch are scored
    by ``num_workers`` threads (default: one per CPU).
    """

    def __init__(
        self,
        cam_curve_interval: float = 0.001,
        iou_thresholds: Sequence[int] = (30, 50, 70),
        num_workers: int | None = None,
    ) -> None:
        self.thresholds = score_thresholds(cam_curve_interval)
        self.iou_thresholds = tuple(int(t) for t in iou_thresholds)
        self.num_workers = num_workers or os.cpu_count() or 1
        self._state = self._empty_state()

    def _empty_state(self) -> dict[str, np.ndarray]:
        n = len(self.thresholds)
        state = {"num_images": np.zeros((), np.int64), "num_classified": np.zeros((), np.int64)}
        for key in ["v1_iou50", *(f"v2_iou{t}" for t in self.iou_thresholds), "top1_loc", "top5_loc"]:
            state[key] = np.zeros(n, np.int64)
        return state

    def add(
        self,
        scoremaps: np.ndarray,
        gt_boxes: Sequence[np.ndarray],
        top1_correct: np.ndarray | None = None,
        top5_correct: np.ndarray | None = None,
    ) -> None:
        """Score a batch of maps (B, H, W), used as they are, against per-image GT boxes (n_i, 4).

        Maps are taken in float64, as the reference casts them, before the uint8 conversion.
        """
        scoremaps = np.asarray(scoremaps, dtype=np.float64)
        if scoremaps.ndim != 3 or len(gt_boxes) != len(scoremaps):
            raise ValueError(f"expected maps (B, H, W) and B box arrays, got {scoremaps.shape} and {len(gt_boxes)}")
        if (top1_correct is None) != (top5_correct is None):
            raise ValueError("give both top1_correct and top5_correct, or neither")
        check_score_range(scoremaps)
        boxes = [_checked_boxes(b) for b in gt_boxes]
        if not boxes:
            return
        with ThreadPoolExecutor(self.num_workers) as pool:
            ious = list(pool.map(max_ious_per_threshold, scoremaps, boxes, [self.thresholds] * len(boxes)))
        largest_iou = np.stack([largest for largest, _ in ious])
        best_iou = np.stack([best for _, best in ious])
        v1_hits = largest_iou >= V1_IOU / 100
        state = self._state
        state["num_images"] += len(scoremaps)
        state["v1_iou50"] += v1_hits.sum(axis=0)
        for t in self.iou_thresholds:
            state[f"v2_iou{t}"] += (best_iou >= t / 100).sum(axis=0)
        if top1_correct is not None:
            state["num_classified"] += len(scoremaps)
            state["top1_loc"] += (v1_hits & np.asarray(top1_correct, bool)[:, None]).sum(axis=0)
            state["top5_loc"] += (v1_hits & np.asarray(top5_correct, bool)[:, None]).sum(axis=0)

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the counts; every entry is additive over disjoint sets of images."""
        return {key: value.copy() for key, value in self._state.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the counts, e.g. by the sum of the states of all ranks."""
        self._state = checked_counts(state, self._empty_state())

    def compute(self) -> dict:
        """Metrics in percent; each accuracy is the best over score thresholds, V2 the mean over IoUs."""
        state = self._state
        num_images = int(state["num_images"])
        if num_images == 0:
            raise FcamError("no image was evaluated: the box metrics need at least one")
        v1_curve = state["v1_iou50"] * 100.0 / num_images
        best = int(np.argmax(v1_curve))
        result = {
            "MaxBoxAcc": float(v1_curve.max()),
            "best_threshold": float(self.thresholds[best]),
            "num_images": num_images,
            "curves": {"thresholds": self.thresholds.copy(), "v1_iou50": v1_curve},
        }
        v2_max = []
        for t in self.iou_thresholds:
            curve = state[f"v2_iou{t}"] * 100.0 / num_images
            result["curves"][f"v2_iou{t}"] = curve
            result[f"MaxBoxAccV2_IoU{t}"] = float(curve.max())
            v2_max.append(curve.max())
        result["MaxBoxAccV2"] = float(np.mean(v2_max))
        num_classified = int(state["num_classified"])
        if num_classified not in (0, num_images):
            raise ValueError(f"class correctness was given for {num_classified} of {num_images} images")
        if num_classified:
            result["top1_loc"] = float(state["top1_loc"][best] * 100.0 / num_images)
            result["top5_loc"] = float(state["top5_loc"][best] * 100.0 / num_images)
        return result


def _checked_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(boxes) == 0:
        raise FcamError("an image has no ground-truth box; box metrics need at least one per image")
    if (boxes < 0).any() or (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise FcamError(f"ground-truth boxes must be x0 <= x1, y0 <= y1, non-negative; got {boxes.tolist()}")
    return boxes
