"""Pixel ground truth of mask datasets (OpenImages, or your own) at evaluation size (Choe et al.)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fcam.data.mask_cache import MaskCache
from fcam.data.png_masks import read_png_mask
from fcam.errors import FcamError


def _read_mask(path: Path, size: int) -> np.ndarray:
    """Whether each pixel of a grayscale PNG resized to ``size`` x ``size`` with nearest neighbour is
    above 0.5, as the reference thresholds the float32 copy (nearest neighbour only copies pixels, and
    an integer level exceeds 0.5 exactly when it is not 0). Greyscale PNGs skip the full decode
    (:mod:`fcam.data.png_masks`)."""
    picked = read_png_mask(path, size)
    if picked is not None:
        return picked
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None  # always 8-bit
    if image is None:
        raise FcamError(f"mask file missing or unreadable: {path}")
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST) > 0


def load_gt_mask(
    mask_root: str | Path, mask_paths: list[str], ignore_path: str | None, size: int = 224,
    dataset: str = "OpenImages", cache: MaskCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and ignore masks, both boolean ``(size, size)``.

    Files are ``<mask_root>/<dataset>/<path>`` (wsolevaluation keeps OpenImages' masks under
    ``<mask_root>/OpenImages/``). Foreground is the union over instances of ``mask > 0.5`` on
    the 0..255 grey levels (any non-zero pixel, as the reference does); ignored pixels are
    those of the ignore mask that are not foreground. Without an ignore path nothing is ignored.
    With a ``cache`` (of this ``size``), masks decoded once are read back from it while their
    PNGs are unchanged.
    """
    folder = Path(mask_root) / dataset
    if not mask_paths:
        raise FcamError(f"no instance mask given under {folder}")
    instances = [folder / mask_path for mask_path in mask_paths]
    ignore_file = folder / ignore_path if ignore_path is not None else None
    if cache is not None:
        if cache.size != size:
            raise ValueError(f"a mask cache of size {cache.size} cannot serve masks of size {size}")
        if (cached := cache.get(instances, ignore_file)) is not None:
            return cached
    foreground = np.zeros((size, size), dtype=bool)
    for path in instances:
        foreground |= _read_mask(path, size)
    ignore = np.zeros_like(foreground) if ignore_file is None else _read_mask(ignore_file, size) & ~foreground
    if cache is not None:
        cache.put(instances, ignore_file, (foreground, ignore))
    return foreground, ignore
