"""MaxBoxAcc (V1), MaxBoxAccV2 and top-1/5 localization, accumulated batch by batch.

Per image only per-threshold hits are kept, so memory does not grow with the data set and the
state of several processes adds up to the state of one (all-reduce by sum). The evaluator is a
plain accumulator: it creates no process or thread. Whoever holds the data may compute the
per-image hits elsewhere with the pure function :func:`box_hits` (or
:func:`box_hits_from_levels`) and hand them to :meth:`BoxEvaluator.add_hits`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fcam.errors import FcamError
from fcam.metrics.counts import CountsState
from fcam.metrics.scoremap import check_score_range, gray_levels, score_thresholds
from fcam.metrics.threshold_boxes import max_ious_per_threshold
from fcam.protocol import CAM_CURVE_INTERVAL, IOU_THRESHOLDS

V1_IOU = 50  # MaxBoxAcc and top-1/5 localization use IoU >= 0.5


class BoxEvaluator(CountsState):
    """Streaming box metrics over score maps already in the boxes' space (e.g. 224x224, in [0, 1]).

    Top-1/top-5 localization (an image counts when its class is right, resp. among the top 5,
    and its MaxBoxAcc box has IoU >= 0.5) is reported under two rules:

    - ``top1_loc`` / ``top5_loc``: read at the score threshold that maximizes MaxBoxAcc;
    - ``top1_loc_maxcurve`` / ``top5_loc_maxcurve``: the maximum over score thresholds of the
      top-1 (top-5) localization curve itself, each at its own best threshold. This is the rule of
      the F-CAM authors' code, hence of the numbers in the F-CAM paper (Belharbi et al., WACV
      2022); it is never below the first rule.
    """

    def __init__(self, cam_curve_interval: float = CAM_CURVE_INTERVAL,
                 iou_thresholds: Sequence[int] = IOU_THRESHOLDS) -> None:
        """
        Args:
            cam_curve_interval: step between score thresholds (0.001 gives 1000 thresholds).
            iou_thresholds: IoU thresholds of MaxBoxAccV2, in percent.
        """
        self.thresholds = score_thresholds(cam_curve_interval)
        self.iou_thresholds = tuple(int(t) for t in iou_thresholds)
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
        """Score a batch of maps in this process.

        Args:
            scoremaps: (B, H, W) maps in [0, 1], used as they are (taken in float64, as the reference).
            gt_boxes: B arrays (n_i, 4) of inclusive x0, y0, x1, y1 boxes in the maps' space.
            top1_correct: optional (B,) bool, whether each image's top-1 class is right.
            top5_correct: optional (B,) bool, whether each image's label is among its top 5.

        Raises:
            FcamError: maps outside [0, 1] or not finite, an image without a box, malformed boxes.
        """
        self.add_hits(box_hits(scoremaps, gt_boxes, self.thresholds, self.iou_thresholds), top1_correct, top5_correct)

    def add_hits(
        self, hits: np.ndarray, top1_correct: np.ndarray | None = None, top5_correct: np.ndarray | None = None
    ) -> None:
        """Add per-image hits computed by :func:`box_hits` with this evaluator's thresholds.

        Args:
            hits: bool (B, 1 + len(iou_thresholds), len(thresholds)).
            top1_correct: optional (B,) bool, as in :meth:`add`.
            top5_correct: optional (B,) bool, as in :meth:`add`.
        """
        hits = np.asarray(hits, dtype=bool)
        expected = (1 + len(self.iou_thresholds), len(self.thresholds))
        if hits.ndim != 3 or hits.shape[1:] != expected:
            raise ValueError(f"expected hits (B, {expected[0]}, {expected[1]}), got {hits.shape}")
        if (top1_correct is None) != (top5_correct is None):
            raise ValueError("give both top1_correct and top5_correct, or neither")
        v1_hits = hits[:, 0]
        state = self._state
        state["num_images"] += len(hits)
        state["v1_iou50"] += v1_hits.sum(axis=0)
        for i, t in enumerate(self.iou_thresholds, start=1):
            state[f"v2_iou{t}"] += hits[:, i].sum(axis=0)
        if top1_correct is not None:
            top1, top5 = (np.asarray(c, dtype=bool).reshape(-1) for c in (top1_correct, top5_correct))
            if len(top1) != len(hits) or len(top5) != len(hits):
                raise ValueError(f"class correctness for {len(top1)}/{len(top5)} images, hits for {len(hits)}")
            state["num_classified"] += len(hits)
            state["top1_loc"] += (v1_hits & top1[:, None]).sum(axis=0)
            state["top5_loc"] += (v1_hits & top5[:, None]).sum(axis=0)

    def compute(self) -> dict:
        """The metrics of every image added so far.

        Returns:
            ``MaxBoxAcc``, ``MaxBoxAccV2`` (mean over the IoU thresholds of each one's best
            accuracy), ``MaxBoxAccV2_IoU{t}``, ``best_threshold`` (the MaxBoxAcc one),
            ``num_images``, ``curves`` (per-threshold accuracies) and, when class correctness
            was given, ``top1_loc``, ``top5_loc``, ``top1_loc_maxcurve``, ``top5_loc_maxcurve``
            (see the class docstring). Accuracies are percentages.
        """
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
            for key in ("top1_loc", "top5_loc"):
                curve = state[key] * 100.0 / num_images
                result[key] = float(curve[best])
                result[f"{key}_maxcurve"] = float(curve.max())
        return result


def box_hits(
    scoremaps: np.ndarray, gt_boxes: Sequence[np.ndarray], thresholds: np.ndarray, iou_thresholds: Sequence[int]
) -> np.ndarray:
    """Per image and score threshold, whether the image is correct for MaxBoxAcc, then for MaxBoxAccV2.

    A pure function of its arguments, so it may run in any process.

    Args:
        scoremaps: (B, H, W) maps in [0, 1], used as they are.
        gt_boxes: B arrays (n_i, 4) of inclusive boxes in the maps' space.
        thresholds: the score thresholds (:attr:`BoxEvaluator.thresholds`).
        iou_thresholds: MaxBoxAccV2's IoU thresholds in percent.

    Returns:
        bool (B, 1 + len(iou_thresholds), len(thresholds)): row 0 the IoU >= 0.5 hits of the
        largest contour's box, row 1 + i those of the best box at ``iou_thresholds[i]``.
    """
    scoremaps = np.asarray(scoremaps, dtype=np.float64)
    if scoremaps.ndim != 3:
        raise ValueError(f"expected maps (B, H, W), got shape {scoremaps.shape}")
    check_score_range(scoremaps)
    return box_hits_from_levels(gray_levels(scoremaps), gt_boxes, thresholds, iou_thresholds)


def box_hits_from_levels(
    levels: np.ndarray, gt_boxes: Sequence[np.ndarray], thresholds: np.ndarray, iou_thresholds: Sequence[int]
) -> np.ndarray:
    """:func:`box_hits` of maps already turned into uint8 levels by :func:`fcam.metrics.scoremap.gray_levels`."""
    levels = np.asarray(levels)
    if levels.ndim != 3 or levels.dtype != np.uint8 or len(gt_boxes) != len(levels):
        raise ValueError(f"expected uint8 levels (B, H, W) and B box arrays, got {levels.dtype} {levels.shape} "
                         f"and {len(gt_boxes)}")
    hits = np.empty((len(levels), 1 + len(iou_thresholds), len(thresholds)), dtype=bool)
    for i, (gray, boxes) in enumerate(zip(levels, gt_boxes)):
        largest_iou, best_iou = max_ious_per_threshold(gray, _checked_boxes(boxes), thresholds)
        hits[i, 0] = largest_iou >= V1_IOU / 100
        for j, t in enumerate(iou_thresholds, start=1):
            hits[i, j] = best_iou >= t / 100
    return hits


def _checked_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(boxes) == 0:
        raise FcamError("an image has no ground-truth box; box metrics need at least one per image")
    if (boxes < 0).any() or (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise FcamError(f"ground-truth boxes must be x0 <= x1, y0 <= y1, non-negative; got {boxes.tolist()}")
    return boxes
