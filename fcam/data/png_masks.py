"""Which pixels of a mask PNG are non-zero after a nearest-neighbour resize, without decoding it all.

The protocol reads a mask as ``cv2.imread(path, IMREAD_GRAYSCALE)``, resizes it with
``INTER_NEAREST`` and keeps the pixels above 0.5 (Choe et al., CVPR 2020). Decoding the PNG is
most of PxAP's cost: libpng inflates the data, then undoes every row's filter. A nearest-neighbour
resize reads only the rows and columns it picks, and "above 0.5" only needs to know which levels
are zero, so for the PNGs masks are stored in (greyscale, 1 to 8 bits, not interlaced) this module
inflates the data with zlib and undoes the row filters of the rows it needs, the same pixels as
OpenCV in about half its time for files written by OpenCV (see :func:`_unfilter`).

The picked rows and columns are OpenCV's own: they come from resizing index ramps with
``cv2.resize``. Any other file returns None and the caller decodes it with OpenCV: colour,
palette, 16-bit, interlaced, transparency or colour-space chunks (which can change grey levels),
a bad CRC or truncated data (OpenCV decides what such a file is).
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that leave a greyscale image's levels alone; any other ancillary chunk sends the file to OpenCV.
_NEUTRAL_CHUNKS = {b"IDAT", b"IEND", b"tEXt", b"zTXt", b"iTXt", b"tIME", b"pHYs"}
_SUB, _PAETH = 1, 4  # PNG row filter types (ISO/IEC 15948, section 9.2): 0 None ... 4 Paeth


def read_png_mask(path: str | Path, size: int) -> np.ndarray | None:
    """``cv2.resize(cv2.imread(path, IMREAD_GRAYSCALE), (size, size), INTER_NEAREST) > 0``, or None
    when the file is not a PNG this reader handles (see the module's docstring)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    parsed = _parse(data)
    if parsed is None:
        return None
    width, height, depth, compressed = parsed
    try:
        raw = zlib.decompress(compressed)
    except zlib.error:
        return None
    stride = (width * depth + 7) // 8
    if len(raw) != height * (stride + 1):
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    filters, rows = rows[:, 0], rows[:, 1:]
    if filters.max() > _PAETH:
        return None
    picked_rows = _nearest_indices(height, size, axis=0)
    levels = _unfilter(rows, filters, picked_rows)
    if depth < 8:
        # Samples are packed from the high bit; a sample is non-zero when any of its bits is.
        bits = np.unpackbits(levels, axis=1)[:, : width * depth]
        nonzero = bits.reshape(size, width, depth).any(axis=2)
    else:
        nonzero = levels != 0
    return nonzero[:, _nearest_indices(width, size, axis=1)]


def _parse(data: bytes) -> tuple[int, int, int, bytes] | None:
    """Width, height, bit depth and the joined IDAT data of a greyscale, non-interlaced PNG whose
    chunks all have a valid CRC and none may change its levels; otherwise None."""
    if not data.startswith(_SIGNATURE):
        return None
    position, header, idat = len(_SIGNATURE), None, []
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        end = position + 12 + length
        if end > len(data):
            return None
        kind, body = data[position + 4 : position + 8], data[position + 8 : end - 4]
        if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack_from(">I", data, end - 4)[0]:
            return None
        position = end
        if header is None:
            if kind != b"IHDR" or length != 13:
                return None
            header = struct.unpack(">IIBBBBB", body)
        elif kind not in _NEUTRAL_CHUNKS:
            return None
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    else:
        return None  # no IEND: truncated
    width, height, depth, colour, compression, filtering, interlace = header
    if colour != 0 or depth not in (1, 2, 4, 8) or (compression, filtering, interlace) != (0, 0, 0) or not idat:
        return None
    if width == 0 or height == 0:
        return None
    return width, height, depth, b"".join(idat)


def _unfilter(rows: np.ndarray, filters: np.ndarray, picked: np.ndarray) -> np.ndarray:
    """The unfiltered bytes of rows ``picked`` (one byte per pixel: greyscale up to 8 bits).

    A row filtered with None or Sub depends on no other row, and Sub adds to each byte the byte to
    its left, modulo 256: a running sum along the row. An image with only such rows (OpenCV's
    writer uses Sub) is undone with array operations on the picked rows only. Up, Average and Paeth
    make a row depend on the one above, so those images are undone byte by byte from the top
    (:mod:`fcam.data.png_unfilter`).
    """
    if filters.max() > _SUB:
        from fcam.data.png_unfilter import unfilter_rows  # numba, only for files that need it

        return unfilter_rows(rows, filters, int(picked.max()))[picked]
    levels = rows[picked]
    sub = filters[picked] == _SUB
    levels[sub] = _running_sums(levels if sub.all() else levels[sub])
    return levels


def _running_sums(rows: np.ndarray) -> np.ndarray:
    """Each row's running sum modulo 256, by doubling (log2(stride) shifted additions of whole
    arrays, on the transposed rows so each addition runs over contiguous memory): ~3x faster
    than ``np.cumsum(rows, axis=1, dtype=np.uint8)``, which adds one byte at a time."""
    sums = np.ascontiguousarray(rows.T)
    shift = 1
    while shift < len(sums):
        sums[shift:] += sums[:-shift].copy()
        shift *= 2
    return sums.T


@lru_cache(maxsize=256)
def _nearest_indices(length: int, size: int, axis: int) -> np.ndarray:
    """The source index OpenCV's ``INTER_NEAREST`` picks for each of ``size`` outputs from ``length``
    inputs along ``axis`` (0: rows, 1: columns), found by resizing a ramp of indices."""
    ramp = np.arange(length, dtype=np.float32)
    shape, dsize = ((length, 1), (1, size)) if axis == 0 else ((1, length), (size, 1))
    picked = cv2.resize(ramp.reshape(shape), dsize, interpolation=cv2.INTER_NEAREST).reshape(-1)
    return picked.astype(np.intp)
