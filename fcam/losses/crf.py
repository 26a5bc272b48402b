"""Dense CRF loss of Tang et al. (ECCV 2018), the regulariser R(S, X) of F-CAM's Eq. 3.

R = -sum_k S_k^T W S_k / B with W the dense Gaussian kernel over the features
(x / sigma_xy, y / sigma_xy, r / sigma_rgb, g / sigma_rgb, b / sigma_rgb) of the raw 0..255 image.
Its gradient -2 W S_k / B is the filtered map the forward pass already computed, so the backward
pass costs nothing (the reference does the same; W is taken as symmetric).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcam.errors import FcamError
from fcam.losses.permutohedral import permutohedral_filter

__all__ = ["DenseCRFLoss", "exact_gaussian_filter", "pixel_features"]

_BACKENDS = ("permutohedral", "exact")
# Elements of one block of kernel values (all images of the batch) in the exact filter.
_EXACT_BLOCK = 4096 * 4096


def pixel_features(images: Tensor, sigma_rgb: float, sigma_xy: float) -> Tensor:
    """(B, 3, H, W) images to (B, H*W, 5) features (x, y, r, g, b), each over its sigma.

    x is the column index and y the row index, as in the reference's bilateral filter.
    """
    batch, _, height, width = images.shape
    rows = torch.arange(height, device=images.device, dtype=images.dtype)
    cols = torch.arange(width, device=images.device, dtype=images.dtype)
    y, x = torch.meshgrid(rows / sigma_xy, cols / sigma_xy, indexing="ij")
    position = torch.stack((x, y)).expand(batch, 2, height, width)
    features = torch.cat((position, images / sigma_rgb), dim=1)
    return features.reshape(batch, 5, height * width).transpose(1, 2)


def exact_gaussian_filter(features: Tensor, values: Tensor, tile: int = 4096) -> Tensor:
    """sum_j exp(-|f_i - f_j|^2 / 2) v_j per image, self-pair included, tiled to bound memory.

    ``features`` (B, N, d), ``values`` (B, N, C) -> (B, N, C). O(N^2) time; kernel blocks are
    at most ``tile`` x ``tile`` per image, and smaller for large batches.
    """
    batch, n_points, _ = features.shape
    features = features - features.mean(dim=1, keepdim=True)
    squared = (features * features).sum(2)
    tile = max(1, min(n_points, tile, math.isqrt(_EXACT_BLOCK // batch)))
    out = torch.zeros_like(values)
    for start in range(0, n_points, tile):
        rows = slice(start, start + tile)
        for col_start in range(0, n_points, tile):
            cols = slice(col_start, col_start + tile)
            distance = squared[:, rows, None] + squared[:, None, cols]
            distance = distance - 2.0 * features[:, rows] @ features[:, cols].transpose(1, 2)
            kernel = torch.exp(-0.5 * distance.clamp_(min=0.0))
            out[:, rows] += kernel @ values[:, cols]
    return out


class _SymmetricQuadraticForm(torch.autograd.Function):
    """-sum S * (W S) / B with the gradient -2 (W S) / B, given W S computed outside."""

    @staticmethod
    def forward(ctx, probs: Tensor, filtered: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(filtered)
        return -(probs * filtered).sum() / probs.shape[0]

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (filtered,) = ctx.saved_tensors
        return -2.0 * grad_output * filtered / filtered.shape[0], None


class DenseCRFLoss(nn.Module):
    """weight * (-sum_k S_k^T W S_k) / B on softmax maps S, with a lattice or exact kernel product.

    ``scale_factor`` s != 1 evaluates the loss on a resized problem, as the reference: the image
    resized with nearest, S bilinearly, and sigma_xy multiplied by s.

    ``reference_size`` R > 0 states ``weight`` and ``sigma_xy`` for R x R images (the paper's
    2e-9 and 100 px were set at 224): an H x W image, of side L = sqrt(H W), is treated as the
    same scene sampled more coarsely or finely, so sigma_xy becomes sigma_xy * L / R and the
    weight weight * (R / L)^4 (the quadratic form sums over pixel pairs: (L/R)^4 fewer of them).
    The loss then has the strength relative to the seeds' cross-entropy that it has at R. 0
    applies ``weight`` and ``sigma_xy`` as given, at any size (the reference code's behaviour).
    """

    def __init__(
        self,
        weight: float = 2e-9,
        sigma_rgb: float = 15.0,
        sigma_xy: float = 100.0,
        scale_factor: float = 1.0,
        backend: str = "permutohedral",
        reference_size: int = 0,
    ) -> None:
        super().__init__()
        if backend not in _BACKENDS:
            raise FcamError(f"CRF backend must be one of {_BACKENDS}, got {backend!r}")
        for name, value in (("sigma_rgb", sigma_rgb), ("sigma_xy", sigma_xy), ("scale_factor", scale_factor)):
            if not value > 0:
                raise FcamError(f"CRF {name} must be positive, got {value}")
        self.weight = weight
        self.sigma_rgb = sigma_rgb
        self.sigma_xy = sigma_xy
        self.scale_factor = scale_factor
        self.backend = backend
        if reference_size < 0:
            raise FcamError(f"CRF reference_size must be >= 0 (0: off), got {reference_size}")
        self.reference_size = reference_size

    def loss(self, images: Tensor, probs: Tensor) -> Tensor:
        """Scalar loss of (B, 3, H, W) 0..255 images and (B, K, H, W) probability maps.

        Always computed in float32 (float64 inputs stay float64), autocast or not: the kernel sums
        reach ~1e9 and half-precision matmuls would err by tens of percent per pixel.
        """
        if images.dim() != 4 or images.shape[1] != 3 or probs.dim() != 4:
            raise ValueError(
                f"CRF loss expects images (B, 3, H, W) and probs (B, K, H, W), got "
                f"{tuple(images.shape)} and {tuple(probs.shape)}"
            )
        if images.shape[0] != probs.shape[0] or images.shape[2:] != probs.shape[2:]:
            raise ValueError(
                f"CRF images {tuple(images.shape)} and probs {tuple(probs.shape)} differ in batch or size"
            )
        work_dtype = torch.promote_types(probs.dtype, torch.float32)
        with torch.autocast(device_type=probs.device.type, enabled=False):
            images = images.detach().to(work_dtype)
            probs = probs.to(work_dtype)
            sigma_xy, weight = self.sigma_xy, self.weight
            if self.reference_size:
                side = math.sqrt(images.shape[2] * images.shape[3]) / self.reference_size
                sigma_xy, weight = sigma_xy * side, weight / side**4
            if self.scale_factor != 1.0:
                images = F.interpolate(images, scale_factor=self.scale_factor, mode="nearest")
                probs = F.interpolate(probs, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
                sigma_xy = sigma_xy * self.scale_factor
            batch, classes = probs.shape[:2]
            features = pixel_features(images, self.sigma_rgb, sigma_xy)
            values = probs.detach().reshape(batch, classes, -1).transpose(1, 2)
            with torch.no_grad():
                if self.backend == "permutohedral":
                    filtered = permutohedral_filter(features, values)
                else:
                    filtered = exact_gaussian_filter(features, values)
            filtered = filtered.transpose(1, 2).reshape(probs.shape)
            return weight * _SymmetricQuadraticForm.apply(probs, filtered)

    def forward(self, images: Tensor, probs: Tensor) -> Tensor:
        return self.loss(images, probs)

    def extra_repr(self) -> str:
        return (
            f"weight={self.weight}, sigma_rgb={self.sigma_rgb}, sigma_xy={self.sigma_xy}, "
            f"scale_factor={self.scale_factor}, backend={self.backend!r}, reference_size={self.reference_size}"
        )
