"""PxAP: area under the pixel precision-recall curve, accumulated as score histograms.

The bin edges are the score thresholds followed by 1, 2 and 3, as in the reference, so the
k-th operating point counts pixels with score >= its threshold. Histograms add up over
batches and over processes.
"""

from __future__ import annotations

import numpy as np

from fcam.errors import FcamError
from fcam.metrics.counts import checked_counts
from fcam.metrics.scoremap import check_score_range, score_thresholds


class MaskEvaluator:
    """Streaming PxAP over score maps in [0, 1] and boolean GT / ignore masks of the same shape."""

    def __init__(self, cam_curve_interval: float = 0.001) -> None:
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
        """Count the scores of foreground pixels and of background pixels that are not ignored."""
        scoremaps = np.asarray(scoremaps, dtype=np.float64)
        gt_masks = np.asarray(gt_masks, dtype=bool)
        ignore_masks = np.asarray(ignore_masks, dtype=bool)
        if scoremaps.ndim != 3 or gt_masks.shape != scoremaps.shape or ignore_masks.shape != scoremaps.shape:
            raise ValueError(
                f"maps, masks and ignore masks must share one (B, H, W) shape, got "
                f"{scoremaps.shape}, {gt_masks.shape}, {ignore_masks.shape}"
            )
        check_score_range(scoremaps)
        self._state["num_images"] += len(scoremaps)
        self._state["fg_hist"] += np.histogram(scoremaps[gt_masks], bins=self.edges)[0]
        self._state["bg_hist"] += np.histogram(scoremaps[~gt_masks & ~ignore_masks], bins=self.edges)[0]

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the histograms; every entry is additive over disjoint sets of images."""
        return {key: value.copy() for key, value in self._state.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the histograms, e.g. by the sum of the states of all ranks."""
        self._state = checked_counts(state, self._empty_state())

    def compute(self) -> dict:
        """PxAP in percent (right Riemann sum of precision over recall) and the curve it integrates."""
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
