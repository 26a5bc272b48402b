"""The torch Dataset over one metadata split."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fcam.data.metadata import Metadata
from fcam.data.transforms import PairedTransform
from fcam.errors import FcamError

BACKENDS = ("fast", "pil")
"""How training images are decoded and resized (see :mod:`fcam.data.transforms`)."""

# 8-bit colour as stored: no EXIF rotation (PIL applies none either); 16-bit files keep their
# depth so that they can be told apart and left to PIL.
_CV2_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_ANYDEPTH


def read_image(path: Path, backend: str = "pil") -> Image.Image | torch.Tensor:
    """An image file as RGB: a PIL image (``"pil"``), or a uint8 ``(3, H, W)`` tensor decoded by
    OpenCV (``"fast"``; the same pixels as PIL for 8-bit JPEG, PNG, BMP, TIFF, WebP and GIF
    files, at most one level apart for CMYK JPEGs; 16-bit and undecodable files go to PIL)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "fast":
        try:
            pixels = cv2.imdecode(np.fromfile(path, dtype=np.uint8), _CV2_FLAGS)
        except OSError:
            pixels = None  # PIL names the problem below
        if pixels is not None and pixels.dtype == np.uint8:
            return torch.from_numpy(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
    try:
        with Image.open(path) as file:
            return file.convert("RGB")
    except OSError as error:
        raise FcamError(f"cannot read image {path}: {error}") from error


class WSOLDataset(Dataset):
    """Images and labels of one split, with the protocol's train or eval transform.

    Image ``i`` is read from ``<image_root>/<image_id>``: ``image_root`` is the folder of one
    dataset (wsolevaluation keeps CUB images at ``<data_root>/CUB/<image_id>``, so callers pass
    ``<data_root>/<dataset>``). An item is a dict with ``image`` (3, H, W) ImageNet-normalized,
    ``raw`` (3, H, W) float 0..255 under the same crop and flip, ``label``, ``index`` and
    ``image_id``. With ``num_classes`` given, every label must be below it. ``train_backend``
    decodes and resizes training images (``"fast"`` or ``"pil"``, the reference's; see
    :mod:`fcam.data.transforms`); evaluation images always go through PIL. With ``uint8`` an
    item's ``raw`` is the uint8 image and ``image`` is left to
    :func:`fcam.data.transforms.complete_batch`, after collation (the loaders do that).
    """

    def __init__(
        self,
        image_root: str | Path,
        metadata: Metadata,
        train: bool,
        resize_size: int = 256,
        crop_size: int = 224,
        num_classes: int | None = None,
        train_backend: str = "fast",
        uint8: bool = False,
    ) -> None:
        if train_backend not in BACKENDS:
            raise ValueError(f"train_backend must be one of {BACKENDS}, got {train_backend!r}")
        self.image_root = Path(image_root)
        self.metadata = metadata
        self.backend = train_backend if train else "pil"
        self.uint8 = uint8
        self.transform = PairedTransform(train, resize_size, crop_size)
        if num_classes is not None:
            folder = metadata.folder or Path(metadata.dataset, metadata.split)
            for image_id, label in zip(metadata.image_ids, metadata.labels):
                if label >= num_classes:
                    raise FcamError(
                        f"{folder / 'class_labels.txt'}: image {image_id!r} has label {label}, "
                        f"but there are {num_classes} classes"
                    )

    def __len__(self) -> int:
        return len(self.metadata.image_ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.metadata.image_ids[index]
        image = read_image(self.image_root / image_id, self.backend)
        item = {"label": self.metadata.labels[index], "index": index, "image_id": image_id}
        if self.uint8:
            return {"raw": self.transform.pixels(image), **item}
        normalized, raw = self.transform(image)
        return {"image": normalized, "raw": raw, **item}
