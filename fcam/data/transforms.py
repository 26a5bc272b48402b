"""Image transforms of the wsolevaluation protocol, giving the raw image alongside the normalized one.

Training: resize to ``resize_size`` squared, random ``crop_size`` crop, random horizontal flip.
Evaluation: resize to ``crop_size`` squared. Resizing is torchvision's (PIL bilinear), as in the
reference loaders. The dense CRF loss needs the un-normalized 0..255 image under the same
geometry, so both come out of one transform with a single draw of its random parameters.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from fcam.errors import FcamError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PairedTransform:
    """Maps a PIL RGB image to ``(normalized, raw)`` float32 tensors of shape ``(3, H, W)``.

    The random crop offsets and the flip come from torch's global generator, so
    ``torch.manual_seed`` and DataLoader worker seeding make them reproducible.
    """

    def __init__(self, train: bool, resize_size: int = 256, crop_size: int = 224) -> None:
        if train and crop_size > resize_size:
            raise FcamError(f"crop_size {crop_size} must not exceed resize_size {resize_size}")
        self.train = train
        self.resize_size = resize_size
        self.crop_size = crop_size
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        side = self.resize_size if self.train else self.crop_size
        image = TF.resize(image, [side, side])
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        if self.train:
            span = side - self.crop_size + 1
            top, left = torch.randint(0, span, (2,)).tolist()
            pixels = pixels[:, top : top + self.crop_size, left : left + self.crop_size]
            if torch.rand(()).item() < 0.5:
                pixels = pixels.flip(-1)
        raw = pixels.float()
        normalized = (raw / 255.0 - self._mean) / self._std
        return normalized, raw.contiguous()
