"""MaxBoxAcc (V1), MaxBoxAccV2 and top-1/5 localization, accumulated batch by batch.

Per image only per-threshold hit counts are kept, so memory does not grow with the data set
and the state of several processes adds up to the state of one (all-reduce by sum).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from typing import Callable, Sequence

import numpy as np

from fcam.errors import FcamError
from fcam.metrics.counts import checked_counts
from fcam.metrics.scoremap import check_score_range, score_thresholds
from fcam.metrics.threshold_boxes import max_ious_per_threshold

V1_IOU = 50  # MaxBoxAcc and top-1/5 localization use IoU >= 0.5


class BoxEvaluator:
    """Streaming box metrics over score maps already in the boxes' space (e.g. 224x224, in [0, 1]).

    Images of a batch are scored by ``num_workers`` processes (default: one per CPU): the caller
    and ``num_workers - 1`` helpers forked for each :meth:`add` and gone when it returns (threads
    where forking is unavailable or not allowed, e.g. inside a DataLoader worker). Only
    per-threshold hits come back from each image, so IoUs below the smallest IoU threshold are
    never needed exactly and the contour search may skip contours that cannot reach them.
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
        score = partial(image_hits, thresholds=self.thresholds, iou_thresholds=self.iou_thresholds)
        workers = min(self.num_workers, len(boxes))
        if workers <= 1:
            hits = _score_chunk(score, scoremaps, boxes)
        else:
            hits = _score_in_parallel(score, scoremaps, boxes, workers)
        v1_hits = hits[:, 0]
        state = self._state
        state["num_images"] += len(scoremaps)
        state["v1_iou50"] += v1_hits.sum(axis=0)
        for i, t in enumerate(self.iou_thresholds, start=1):
            state[f"v2_iou{t}"] += hits[:, i].sum(axis=0)
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


def image_hits(
    scoremap: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray, iou_thresholds: Sequence[int]
) -> np.ndarray:
    """Per score threshold, whether the image is correct for MaxBoxAcc (IoU 50), then for MaxBoxAccV2
    at each of ``iou_thresholds``: bool (1 + len(iou_thresholds), len(thresholds)).
    """
    min_iou = min(V1_IOU, *iou_thresholds) / 100
    largest_iou, best_iou = max_ious_per_threshold(scoremap, gt_boxes, thresholds, min_iou=min_iou)
    return np.stack([largest_iou >= V1_IOU / 100, *(best_iou >= t / 100 for t in iou_thresholds)])


def _score_chunk(score: Callable[..., np.ndarray], scoremaps: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
    return np.stack([score(scoremap, gt) for scoremap, gt in zip(scoremaps, boxes)])


def _score_in_parallel(
    score: Callable[..., np.ndarray], scoremaps: np.ndarray, boxes: list[np.ndarray], workers: int
) -> np.ndarray:
    """``_score_chunk`` over a few chunks per worker, so that fast maps do not wait for slow ones.

    The helpers take chunks from the front of the queue while the caller takes them from the back
    (those not started yet), so the caller's core works too and one fewer process is forked.
    """
    num_chunks = min(len(boxes), 4 * workers)
    bounds = np.linspace(0, len(boxes), num_chunks + 1).astype(int).tolist()
    chunks = [(scoremaps[a:b], boxes[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    with _helpers(workers - 1) as pool:
        futures = [pool.submit(_score_chunk, score, *chunk) for chunk in chunks]
        done_here = {i: _score_chunk(score, *chunks[i]) for i in reversed(range(num_chunks)) if futures[i].cancel()}
        return np.concatenate([done_here[i] if i in done_here else futures[i].result() for i in range(num_chunks)])


def _helpers(workers: int) -> Executor:
    """Forked processes (true parallelism: the contour post-processing holds the GIL), else threads."""
    if "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


def _checked_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(boxes) == 0:
        raise FcamError("an image has no ground-truth box; box metrics need at least one per image")
    if (boxes < 0).any() or (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise FcamError(f"ground-truth boxes must be x0 <= x1, y0 <= y1, non-negative; got {boxes.tolist()}")
    return boxes
