"""Undoing PNG row filters one byte at a time, for images with Average or Paeth rows.

Those two filters predict a byte from the already decoded byte to its left, so a row cannot be
undone with array operations; :mod:`fcam.data.png_masks` imports this module (and numba) only when
a mask PNG has such rows. One byte per pixel (greyscale up to 8 bits); the rules are those of the
PNG specification (ISO/IEC 15948, section 9).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def unfilter_rows(rows: np.ndarray, filters: np.ndarray, last: int) -> np.ndarray:
    """Rows 0..``last`` of the image, unfiltered: (last + 1, stride) uint8."""
    stride = rows.shape[1]
    out = np.zeros((last + 2, stride), dtype=np.uint8)  # row 0: the zeros above the image
    for r in range(1, last + 2):
        raw, up, row = rows[r - 1], out[r - 1], out[r]
        kind = filters[r - 1]
        if kind == 0:
            row[:] = raw
        elif kind == 1:
            left = np.uint8(0)
            for i in range(stride):
                left = raw[i] + left
                row[i] = left
        elif kind == 2:
            for i in range(stride):
                row[i] = raw[i] + up[i]
        elif kind == 3:
            left = 0
            for i in range(stride):
                left = (np.int32(raw[i]) + ((left + np.int32(up[i])) >> 1)) & 255
                row[i] = left
        else:
            left, corner = 0, 0
            for i in range(stride):
                above = np.int32(up[i])
                estimate = left + above - corner
                to_left, to_up, to_corner = abs(estimate - left), abs(estimate - above), abs(estimate - corner)
                if to_left <= to_up and to_left <= to_corner:
                    guess = left
                elif to_up <= to_corner:
                    guess = above
                else:
                    guess = corner
                left = (np.int32(raw[i]) + guess) & 255
                row[i] = left
                corner = above
    return out[1:]
