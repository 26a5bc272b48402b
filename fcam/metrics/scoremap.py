"""Score maps as the wsolevaluation protocol treats them: resize, min-max normalize, validate, threshold."""

from __future__ import annotations

import cv2
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


def check_scoremap(scoremap: np.ndarray, size: int | tuple[int, int], name: str) -> None:
    """Raise :class:`FcamError` naming ``name`` unless ``scoremap`` is a finite (height, width) map in [0, 1]."""
    height, width = (size, size) if isinstance(size, int) else size
    scoremap = np.asarray(scoremap)
    if scoremap.ndim != 2:
        raise FcamError(f"{name}: a score map must be 2-D ({height}x{width}), got shape {scoremap.shape}")
    if scoremap.shape != (height, width):
        raise FcamError(f"{name}: a score map must be {height}x{width}, got {scoremap.shape[0]}x{scoremap.shape[1]}")
    if not np.issubdtype(scoremap.dtype, np.floating):
        raise FcamError(f"{name}: a score map must hold floats, got dtype {scoremap.dtype}")
    if not np.isfinite(scoremap).all():
        raise FcamError(f"{name}: a score map must not contain NaN or inf")
    if scoremap.min() < 0 or scoremap.max() > 1:
        raise FcamError(
            f"{name}: score map values must lie in [0, 1], got [{scoremap.min():.6g}, {scoremap.max():.6g}]"
        )


def check_score_range(scoremaps: np.ndarray) -> None:
    """Raise :class:`FcamError` unless the maps handed to an evaluator are finite and within [0, 1]."""
    if scoremaps.size and not (np.isfinite(scoremaps).all() and scoremaps.min() >= 0 and scoremaps.max() <= 1):
        raise FcamError("score maps given to the evaluator must be finite and within [0, 1]; normalize them first")
