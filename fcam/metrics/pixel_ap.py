"""PxAP: area under the pixel precision-recall curve, accumulated as score histograms.

The bin edges are the score thresholds followed by 1, 2 and 3, as in the reference, so the
k-th operating point counts pixels with score >= its threshold. Histograms add up over
batches and over processes. The evaluator is a plain accumulator: it creates no process or
thread; per-image histograms may be computed elsewhere with the pure function
:func:`pixel_histograms` and handed to :meth:`MaskEvaluator.add_histograms`.
"""

from __future__ import annotations

import numpy as np

from fcam.errors import FcamError
from fcam.metrics.counts import CountsState
from fcam.metrics.scoremap import check_score_range, score_thresholds
from fcam.protocol import CAM_CURVE_INTERVAL

FOREGROUND, BACKGROUND = 0, 1  # rows of a per-image histogram


class MaskEvaluator(CountsState):
    """Streaming PxAP over score maps in [0, 1] and boolean GT / ignore masks of the same shape."""

    def __init__(self, cam_curve_interval: float = CAM_CURVE_INTERVAL) -> None:
        """
        Args:
            cam_curve_interval: step between score thresholds (0.001 gives 1000 thresholds).
        """
        self.edges = np.append(score_thresholds(cam_curve_interval), [1.0, 2.0, 3.0])
        self._state = self._empty_state()

    def _empty_state(self) -> dict[str, np.ndarray]:
        bins = len(self.edges) - 1
        return {
            "num_images": np.zeros((), np.int64),
            "fg_hist": np.zeros(bins, np.int64),
            "bg_hist": np.zeros(bins, np.int64),
        }

    def add(self, scoremaps: np.ndarray, gt_masks: np.ndarray, ignore_masks: np.ndarray) -> None:
        """Count the scores of foreground pixels and of background pixels that are not ignored.

        Args:
            scoremaps: (B, H, W) maps in [0, 1].
            gt_masks: (B, H, W) bool, the foreground.
            ignore_masks: (B, H, W) bool; only background pixels are dropped by it.

        Raises:
            FcamError: maps outside [0, 1] or not finite.
        """
        self.add_histograms(pixel_histograms(scoremaps, gt_masks, ignore_masks, self.edges))

    def add_histograms(self, histograms: np.ndarray) -> None:
        """Add per-image histograms computed by :func:`pixel_histograms` with this evaluator's edges.

        Args:
            histograms: int (B, 2, len(edges) - 1): foreground then background counts per bin.
        """
        histograms = np.asarray(histograms)
        if histograms.ndim != 3 or histograms.shape[1:] != (2, len(self.edges) - 1):
            raise ValueError(f"expected histograms (B, 2, {len(self.edges) - 1}), got {histograms.shape}")
        self._state["num_images"] += len(histograms)
        self._state["fg_hist"] += histograms[:, FOREGROUND].sum(axis=0, dtype=np.int64)
        self._state["bg_hist"] += histograms[:, BACKGROUND].sum(axis=0, dtype=np.int64)

    def compute(self) -> dict:
        """PxAP of every image added so far.

        Returns:
            ``PxAP`` in percent (right Riemann sum of precision over recall), ``num_images`` and
            ``curves`` (thresholds from the top, precision, recall).

        Raises:
            FcamError: no foreground pixel was seen.
        """
        fg_hist = self._state["fg_hist"].astype(np.float64)
        bg_hist = self._state["bg_hist"].astype(np.float64)
        num_fg = fg_hist.sum()
        if num_fg == 0:
            raise FcamError("no foreground pixel in the ground-truth masks: PxAP is undefined")
        # Cumulating from the top bin down: the operating points run from threshold 3.0 to 0.0.
        tp = fg_hist[::-1].cumsum()
        fp = bg_hist[::-1].cumsum()
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
        recall = tp / num_fg
        counted = (tp + fp)[1:] != 0
        pxap = (precision[1:] * np.diff(recall))[counted].sum() * 100
        return {
            "PxAP": float(pxap),
            "num_images": int(self._state["num_images"]),
            "curves": {"thresholds": self.edges[:-1][::-1].copy(), "precision": precision, "recall": recall},
        }


def pixel_histograms(
    scoremaps: np.ndarray, gt_masks: np.ndarray, ignore_masks: np.ndarray, edges: np.ndarray
) -> np.ndarray:
    """Per image, the histograms of its foreground scores and of its non-ignored background scores.

    A pure function of its arguments, so it may run in any process. The counts equal
    ``np.histogram(scores, bins=edges)`` (bin k holds ``edges[k] <= s < edges[k + 1]``).

    Args:
        scoremaps: (B, H, W) maps in [0, 1].
        gt_masks: (B, H, W) bool foreground.
        ignore_masks: (B, H, W) bool; ignored background pixels are not counted.
        edges: increasing bin edges starting at 0 (:attr:`MaskEvaluator.edges`).

    Returns:
        int64 (B, 2, len(edges) - 1): foreground counts, then background counts.
    """
    scoremaps = np.asarray(scoremaps, dtype=np.float64)
    gt_masks = np.asarray(gt_masks, dtype=bool)
    ignore_masks = np.asarray(ignore_masks, dtype=bool)
    if scoremaps.ndim != 3 or gt_masks.shape != scoremaps.shape or ignore_masks.shape != scoremaps.shape:
        raise ValueError(
            f"maps, masks and ignore masks must share one (B, H, W) shape, got "
            f"{scoremaps.shape}, {gt_masks.shape}, {ignore_masks.shape}"
        )
    check_score_range(scoremaps)
    num_bins = len(edges) - 1
    num_images = len(scoremaps)
    # Slot of a pixel: 3 per bin (foreground, counted background, ignored background), a block of
    # 3 * num_bins per image; the ignored counts are dropped.
    background = ~gt_masks.reshape(num_images, -1)
    pixel_class = background.view(np.uint8) + (ignore_masks.reshape(num_images, -1) & background).view(np.uint8)
    slots = _bin_indices(scoremaps.reshape(num_images, -1), edges)
    slots *= 3
    slots += pixel_class
    slots += (3 * num_bins * np.arange(num_images))[:, None]
    counts = np.bincount(slots.ravel(), minlength=3 * num_bins * num_images)
    return counts.reshape(num_images, num_bins, 3)[:, :, :2].transpose(0, 2, 1).astype(np.int64)


# A score whose ``s / step`` lies this close to an integer is binned by comparing it with the edges.
_NEAR_EDGE = 1e-6


def _bin_indices(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index k of the bin ``edges[k] <= s < edges[k + 1]`` of each score s in [0, 1], as ``np.histogram``.

    The thresholds below 1 are evenly spaced (checked), so ``s / step`` truncated is the bin of s
    unless s lies within a few rounding errors of an edge, i.e. ``s / step`` within
    :data:`_NEAR_EDGE` of an integer, or s is 1.0 (the edge 1.0 need not be a multiple of the step):
    those few scores are binned by a search among the edges.
    """
    scale = 1.0 / (edges[1] - edges[0])
    below_one = int(np.searchsorted(edges, 1.0))
    if np.abs(edges[:below_one] * scale - np.arange(below_one)).max() >= _NEAR_EDGE / 4:
        return np.searchsorted(edges, scores, side="right") - 1
    steps = np.multiply(scores, scale)
    bins = steps.astype(np.intp)
    steps -= bins
    near = np.flatnonzero((steps < _NEAR_EDGE) | (steps > 1 - _NEAR_EDGE) | (scores >= 1.0))
    flat = bins.reshape(-1)
    flat[near] = np.searchsorted(edges, scores.reshape(-1)[near], side="right") - 1
    return bins
