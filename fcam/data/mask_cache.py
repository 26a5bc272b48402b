"""An on-disk cache of ground-truth masks at evaluation size.

Decoding an image's mask PNGs is most of what PxAP costs (about 2 ms of 3 per image at
OpenImages' sizes), and every evaluation of the same split decodes the same files again. The
cache keeps each image's foreground and ignore masks, bit-packed, in one small file under
``<root>/<size>/``, named by a hash of the source PNGs' paths. An entry records the size and
modification time of every source PNG and is used only while all of them still match; a
changed or replaced PNG makes the mask be decoded and stored again. Entries are written
through a temporary file and renamed, so concurrent workers never read a partial one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from fcam.errors import FcamError


class MaskCache:
    """Foreground and ignore masks of ``size`` x ``size`` keyed by their source PNGs.

    Args:
        root: the cache directory (created when missing; any number of sizes and datasets can
            share it).
        size: the evaluation size the masks were resized to.
    """

    def __init__(self, root: str | Path, size: int) -> None:
        self.root = Path(root).expanduser()
        self.size = size
        self._folder = self.root / str(size)
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FcamError(f"mask cache: cannot create {self._folder} ({exc.strerror})") from None

    def get(self, instances: list[Path], ignore: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
        """The cached (foreground, ignore) masks of these instance and ignore PNGs, or None
        (not cached, or a source changed since)."""
        sources = _sources(instances, ignore)
        path = self._entry(instances, ignore)
        try:
            data = np.fromfile(path, dtype=np.uint8)
            stamp = _stamp(sources)
        except OSError:
            return None
        head = stamp.nbytes
        if data.size != head + 2 * self._packed_bytes or not np.array_equal(data[:head].view(np.int64), stamp):
            return None
        bits = np.unpackbits(data[head:].reshape(2, -1), axis=1, count=self.size * self.size).astype(bool)
        foreground, ignore = bits.reshape(2, self.size, self.size)
        return foreground, ignore

    def put(self, instances: list[Path], ignore: Path | None, masks: tuple[np.ndarray, np.ndarray]) -> None:
        """Store the (foreground, ignore) ``masks`` just decoded from these PNGs."""
        path = self._entry(instances, ignore)
        packed = np.packbits(np.stack(masks).reshape(2, -1), axis=1)
        payload = _stamp(_sources(instances, ignore)).tobytes() + packed.tobytes()
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_bytes(payload)
            os.replace(temporary, path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise FcamError(f"mask cache: cannot write {path} ({exc.strerror})") from None

    @property
    def _packed_bytes(self) -> int:
        return (self.size * self.size + 7) // 8

    def _entry(self, instances: list[Path], ignore: Path | None) -> Path:
        names = [str(p.resolve()) for p in instances] + ["ignore:" + (str(ignore.resolve()) if ignore else "")]
        key = hashlib.sha1("\n".join(names).encode()).hexdigest()
        return self._folder / key[:2] / f"{key}.bin"


def _sources(instances: list[Path], ignore: Path | None) -> list[Path]:
    return [*instances, ignore] if ignore is not None else list(instances)


def _stamp(sources: list[Path]) -> np.ndarray:
    """Size and modification time (ns) of each source file, as int64 (raises OSError if one is gone)."""
    stats = [os.stat(p) for p in sources]
    return np.array([[s.st_size, s.st_mtime_ns] for s in stats], dtype=np.int64).ravel()
