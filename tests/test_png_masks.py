"""The PNG mask reader against OpenCV: same pixels for every row filter, bit depth and size, and
OpenCV's own decode for every file it does not handle."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from fcam.data.png_masks import read_png_mask


def opencv_mask(path, size: int) -> np.ndarray:
    """The protocol's reading of a mask: greyscale decode, nearest-neighbour resize, above 0.5."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(np.float32(image), (size, size), interpolation=cv2.INTER_NEAREST) > 0.5


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    estimate = left + up - corner
    distances = [abs(estimate - left), abs(estimate - up), abs(estimate - corner)]
    return (left, up, corner)[distances.index(min(distances))]


def write_png(path, levels: np.ndarray, depth: int, filters: list[int], extra: bytes = b"",
              colour: int = 0, interlace: int = 0) -> None:
    """A greyscale PNG of ``levels`` (< 2**depth) with the given filter type on each row, written by
    hand so every filter and depth is exercised (no library writes all of them on demand)."""
    height, width = levels.shape
    if depth < 8:
        bits = np.unpackbits(levels.astype(np.uint8)[..., None], axis=2)[..., 8 - depth:].reshape(height, -1)
        packed = np.packbits(bits, axis=1)
    else:
        packed = levels.astype(np.uint8)
    previous = np.zeros(packed.shape[1], dtype=int)
    encoded = bytearray()
    for row, kind in zip(packed.astype(int), filters):
        encoded.append(kind)
        for i, value in enumerate(row):
            left = row[i - 1] if i else 0
            corner = previous[i - 1] if i else 0
            encoded.append((value - _predict(kind, left, previous[i], corner)) % 256)
        previous = row
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra + _chunk(b"IDAT", zlib.compress(bytes(encoded)))
            + _chunk(b"IEND", b""))
    path.write_bytes(data)


def random_levels(rng: np.random.Generator, height: int, width: int, depth: int) -> np.ndarray:
    """Blocks of 0 and of random non-zero levels, with a sprinkle of single pixels."""
    top = 2**depth - 1
    blocks = rng.integers(0, 2, (height // 7 + 1, width // 7 + 1)) * rng.integers(1, top + 1)
    levels = np.kron(blocks, np.ones((7, 7), dtype=int))[:height, :width]
    specks = rng.random((height, width)) < 0.02
    levels[specks] = rng.integers(0, top + 1, specks.sum())
    return levels


@pytest.mark.parametrize("depth", [1, 2, 4, 8])
def test_every_filter_and_depth_matches_opencv(tmp_path, depth):
    rng = np.random.default_rng(depth)
    for case in range(12):
        height, width = (int(v) for v in rng.integers(1, 90, 2))
        filters = rng.integers(0, 5, height).tolist() if case % 3 else [int(rng.integers(0, 5))] * height
        path = tmp_path / f"{case}.png"
        write_png(path, random_levels(rng, height, width, depth), depth, filters)
        for size in (224, 33, 7):
            ours = read_png_mask(path, size)
            assert ours is not None, f"depth {depth}, filters {sorted(set(filters))}: not handled"
            np.testing.assert_array_equal(ours, opencv_mask(path, size), err_msg=f"{depth=} {case=} {size=}")


def test_library_writers_match_opencv(tmp_path):
    """OpenCV's writer (Sub rows, every compression level) and PIL's (adaptive filters, 1-bit and
    8-bit) at sizes around the evaluation size, up- and downscaled."""
    rng = np.random.default_rng(0)
    for case in range(24):
        height, width = (int(v) for v in rng.integers(100, 500, 2))
        levels = (random_levels(rng, height, width, 8) > 0).astype(np.uint8) * int(rng.integers(1, 256))
        path = tmp_path / f"{case}.png"
        if case % 3 == 0:
            cv2.imwrite(str(path), levels, [cv2.IMWRITE_PNG_COMPRESSION, case % 10])
        elif case % 3 == 1:
            Image.fromarray(levels).save(path, optimize=bool(case % 2))
        else:
            Image.fromarray(levels > 0).save(path)
        for size in (224, 450):
            ours = read_png_mask(path, size)
            assert ours is not None
            np.testing.assert_array_equal(ours, opencv_mask(path, size))


def test_other_files_are_left_to_opencv(tmp_path):
    rng = np.random.default_rng(1)
    levels = random_levels(rng, 20, 30, 8)
    declined = {
        "rgb": lambda p: Image.fromarray(np.repeat(levels[..., None], 3, axis=2).astype(np.uint8)).save(p),
        "palette": lambda p: Image.fromarray(levels.astype(np.uint8)).convert("P").save(p),
        "16-bit": lambda p: cv2.imwrite(str(p), levels.astype(np.uint16) * 257),
        "grey+alpha": lambda p: Image.fromarray(levels.astype(np.uint8)).convert("LA").save(p),
        "transparency": lambda p: write_png(p, levels, 8, [0] * 20, extra=_chunk(b"tRNS", b"\x00\x00")),
        "gamma": lambda p: write_png(p, levels, 8, [0] * 20, extra=_chunk(b"gAMA", struct.pack(">I", 100000))),
        "interlaced": lambda p: write_png(p, levels, 8, [0] * 20, interlace=1),
        "bad filter type": lambda p: write_png(p, levels, 8, [5] * 20),
    }
    for name, write in declined.items():
        path = tmp_path / f"{name}.png"
        write(path)
        assert read_png_mask(path, 16) is None, name
    good = tmp_path / "good.png"
    write_png(good, levels, 8, [1] * 20, extra=_chunk(b"tEXt", b"Comment\x00hello"))
    assert read_png_mask(good, 16) is not None
    data = bytearray(good.read_bytes())
    data[-20] ^= 0xFF  # inside the IDAT chunk: its CRC no longer matches
    (tmp_path / "bad_crc.png").write_bytes(bytes(data))
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:-30])
    (tmp_path / "not_png.png").write_bytes(b"GIF89a" + bytes(40))
    for name in ("bad_crc.png", "truncated.png", "not_png.png", "missing.png"):
        assert read_png_mask(tmp_path / name, 16) is None, name
