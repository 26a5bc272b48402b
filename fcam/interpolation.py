"""The one vocabulary for resizing score maps, shared by CAMs, metrics and configs.

Each name means one computation, wherever it is used:

- ``bicubic``: OpenCV ``INTER_CUBIC`` on float64, how wsolevaluation upsamples a low-resolution
  CAM before scoring it (Choe et al., CVPR 2020). The protocol's choice.
- ``bilinear``: torch ``bilinear`` with ``align_corners=False``, how the F-CAM code upsamples CAMs.
- ``torch-bicubic``: torch ``bicubic`` with ``align_corners=False``. It runs on any device and
  equals OpenCV's bicubic to about 1e-6 (exactly at integer scale factors), so it suits training
  (seeds) but not exact protocol numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# Names only at import time: the configs and the commands' --help read this vocabulary without
# loading torch or OpenCV, which the resizing functions import when they run.
INTERPOLATIONS: dict[str, str] = {
    "bicubic": "OpenCV INTER_CUBIC on float64 (wsolevaluation; the protocol's)",
    "bilinear": "torch bilinear, align_corners=False (the F-CAM code's)",
    "torch-bicubic": "torch bicubic, align_corners=False (any device; OpenCV's bicubic to ~1e-6)",
}

def check_interpolation(name: str) -> str:
    """``name`` if it is in :data:`INTERPOLATIONS`, else ValueError listing the names."""
    if name not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {name!r}; expected one of {', '.join(INTERPOLATIONS)}")
    return name


def resize_maps(maps: Any, size: int | tuple[int, int], interpolation: str) -> Any:
    """Resize one map (h, w) or a batch (B, h, w) to ``size`` (an int or (height, width)).

    A numpy array comes back as float64 numpy; a tensor comes back as a tensor of its own dtype
    on its own device (``bicubic`` goes through OpenCV on the CPU in float64).
    """
    import torch

    check_interpolation(interpolation)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if maps.ndim not in (2, 3):
        raise ValueError(f"expected a map (h, w) or a batch (B, h, w), got shape {tuple(maps.shape)}")
    if isinstance(maps, torch.Tensor):
        if interpolation == "bicubic":
            resized = _opencv_bicubic(maps.detach().double().cpu().numpy(), height, width)
            return torch.from_numpy(resized).to(device=maps.device, dtype=maps.dtype)
        return _torch_resize(maps, height, width, interpolation)
    maps = np.asarray(maps, dtype=np.float64)
    if interpolation == "bicubic":
        return _opencv_bicubic(maps, height, width)
    return _torch_resize(torch.from_numpy(np.ascontiguousarray(maps)), height, width, interpolation).numpy()


def _opencv_bicubic(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2  # only the protocol's resizing needs OpenCV

    batch = maps if maps.ndim == 3 else maps[None]
    resized = np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_CUBIC) for m in batch])
    return resized if maps.ndim == 3 else resized[0]


def _torch_resize(maps: torch.Tensor, height: int, width: int, interpolation: str) -> torch.Tensor:
    import torch.nn.functional as F

    mode = "bicubic" if interpolation == "torch-bicubic" else "bilinear"
    batch = maps if maps.ndim == 3 else maps[None]
    resized = F.interpolate(batch[:, None], size=(height, width), mode=mode, align_corners=False)[:, 0]
    return resized if maps.ndim == 3 else resized[0]
