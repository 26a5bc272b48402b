"""Score maps as the wsolevaluation protocol treats them: resize, min-max normalize, validate, threshold."""

from __future__ import annotations

import numpy as np

from fcam.errors import FcamError
from fcam.interpolation import resize_maps


def score_thresholds(cam_curve_interval: float) -> np.ndarray:
    """The operating points of every curve: ``np.arange(0, 1, interval)`` (0.001 gives 1000, the last 0.999)."""
    return np.arange(0, 1, cam_curve_interval)


def normalize_scoremap(scoremap: np.ndarray) -> np.ndarray:
    """Min-max normalize a map (h, w), or each map of a batch (..., h, w), to [0, 1] in float64;
    a map with a NaN or with min == max becomes zeros.

    The division is by ``max(map - min)``, as the reference does, so the maximum is exactly 1.0;
    a batch gives bit for bit the maps one by one would.
    """
    maps = np.array(scoremap, dtype=np.float64)
    axes = (-2, -1)
    maps -= maps.min(axis=axes, keepdims=True)
    peak = maps.max(axis=axes, keepdims=True)
    invalid = np.isnan(peak) | (peak == 0)  # a NaN propagates to min and max; min == max leaves 0
    maps /= np.where(invalid, 1.0, peak)
    maps[np.broadcast_to(invalid, maps.shape)] = 0.0
    return maps


def resize_scoremap(
    scoremap: np.ndarray, size: int | tuple[int, int], interpolation: str = "bicubic"
) -> np.ndarray:
    """Resize one map (h, w) or a batch (B, h, w) to ``size`` in float64; ``interpolation`` is a
    name of :data:`fcam.interpolation.INTERPOLATIONS` (``bicubic``: OpenCV's, as the reference)."""
    return resize_maps(np.asarray(scoremap, dtype=np.float64), size, interpolation)


def check_score_range(scoremaps: np.ndarray) -> None:
    """Raise :class:`FcamError` unless the maps handed to an evaluator are finite and within [0, 1]."""
    # NaN fails both comparisons and propagates to min and max, as infinities fail one of them.
    if scoremaps.size and not (scoremaps.min() >= 0 and scoremaps.max() <= 1):
        raise FcamError("score maps given to the evaluator must be finite and within [0, 1]; normalize them first")


def gray_levels(scoremaps: np.ndarray) -> np.ndarray:
    """The uint8 levels the box protocol thresholds: ``(map * 255)`` truncated, as the reference converts.

    Box metrics depend on a map only through these levels, so scoring them elsewhere needs 1/8
    of the float64 map's bytes.
    """
    return (np.asarray(scoremaps, dtype=np.float64) * 255).astype(np.uint8)
