"""Image transforms of the wsolevaluation protocol, giving the raw image alongside the normalized one.

Training: resize to ``resize_size`` squared, random ``crop_size`` crop, random horizontal flip.
Evaluation: resize to ``crop_size`` squared. The dense CRF loss needs the un-normalized 0..255
image under the same geometry, so both come out of one transform with a single draw of its
random parameters.

The reference loaders resize PIL images with PIL's bilinear filter (through torchvision); a PIL
image given here is resized exactly so, and evaluation always gets PIL images. Training may
instead get a uint8 tensor (decoded by OpenCV: the same pixels as PIL) resized with torchvision's
antialiased bilinear kernel. ``scripts/bench_data.py`` measures that path about twice as fast per
worker; its resize differs from PIL's by one grey level on about 0.15 % of the values (by two on
about one value in 10^7). That is far below what the random crop and flip change, so it is
acceptable for training; it is never used for evaluation, whose maps must come from the
reference's inputs.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

from fcam.errors import FcamError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_square(image: Image.Image | torch.Tensor, side: int) -> torch.Tensor:
    """The image resized to ``side`` x ``side`` as a uint8 ``(3, side, side)`` tensor: PIL
    bilinear for a PIL RGB image (the reference's), torchvision's antialiased bilinear for a
    uint8 ``(3, H, W)`` tensor."""
    if isinstance(image, Image.Image):
        resized = image.resize((side, side), Image.BILINEAR)
        return torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1)
    return F.resize(image, [side, side], interpolation=F.InterpolationMode.BILINEAR, antialias=True)


def normalize(raw: torch.Tensor) -> torch.Tensor:
    """ImageNet normalization of float 0..255 images ``(3, H, W)`` or ``(B, 3, H, W)``, on their
    device: divide by 255, subtract the mean, divide by the std, in that order, as torchvision's
    ``ToTensor`` + ``Normalize`` do, so evaluation inputs equal the reference's bit for bit."""
    mean = torch.tensor(IMAGENET_MEAN, device=raw.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=raw.device).view(3, 1, 1)
    return raw.div(255.0).sub_(mean).div_(std)


def complete_batch(batch: dict, device: torch.device | str = "cpu") -> dict:
    """A collated batch of uint8 ``raw`` images (``WSOLDataset(uint8=True)``) with float
    ``raw`` (0..255) and normalized ``image`` made on ``device``: a uint8 batch is a quarter of
    the float one to send from a worker process, and an eighth of the pair."""
    raw = batch["raw"].to(device, non_blocking=True).float()
    return {**batch, "raw": raw, "image": normalize(raw)}


class PairedTransform:
    """Maps a PIL RGB image or a uint8 ``(3, H, W)`` tensor to ``(normalized, raw)`` float32
    tensors of shape ``(3, S, S)``; :meth:`pixels` gives the uint8 ``raw`` alone.

    The random crop offsets and the flip come from torch's global generator, so
    ``torch.manual_seed`` and DataLoader worker seeding make them reproducible.
    """

    def __init__(self, train: bool, resize_size: int = 256, crop_size: int = 224) -> None:
        if train and crop_size > resize_size:
            raise FcamError(f"crop_size {crop_size} must not exceed resize_size {resize_size}")
        self.train = train
        self.resize_size = resize_size
        self.crop_size = crop_size

    def pixels(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """The uint8 ``(3, S, S)`` image under the transform's geometry (one random draw)."""
        side = self.resize_size if self.train else self.crop_size
        pixels = resize_square(image, side)
        if self.train:
            span = side - self.crop_size + 1
            top, left = torch.randint(0, span, (2,)).tolist()
            pixels = pixels[:, top : top + self.crop_size, left : left + self.crop_size]
            if torch.rand(()).item() < 0.5:
                pixels = pixels.flip(-1)
        return pixels.contiguous()

    def __call__(self, image: Image.Image | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.pixels(image).float()
        return normalize(raw), raw
