"""Pixel seeds from a CAM: Otsu foreground, lowest-CAM background, sampled and dilated (F-CAM; docs/method.md §3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fcam.errors import FcamError
from fcam.losses.pce import IGNORE_INDEX

__all__ = ["SeedSampler", "otsu_threshold"]


def otsu_threshold(images_u8: Tensor) -> Tensor:
    """Per-image Otsu threshold of (B, H, W) uint8 maps, as ``skimage.filters.threshold_otsu``.

    Same histogram (one bin per integer level between the image's min and max), same
    between-class variance in float64 and the same first-maximum choice; a constant image gets
    its own value. Returns a (B,) int64 tensor on the input's device.
    """
    if images_u8.dtype != torch.uint8 or images_u8.dim() != 3:
        raise TypeError(f"otsu_threshold expects (B, H, W) uint8 maps, got {images_u8.dtype} {tuple(images_u8.shape)}")
    batch = images_u8.shape[0]
    device = images_u8.device
    flat = images_u8.reshape(batch, -1).to(torch.int64)
    offsets = torch.arange(batch, device=device)[:, None] * 256
    counts = torch.bincount((flat + offsets).reshape(-1), minlength=256 * batch).reshape(batch, 256)
    levels = torch.arange(256, device=device)
    # Integer cumulative sums are exact, so the float64 ratios below round as numpy's do.
    weight1 = counts.cumsum(1)
    weight2 = counts.flip(1).cumsum(1).flip(1)
    moment = counts * levels
    mean1 = moment.cumsum(1).double() / weight1.double()
    mean2 = moment.flip(1).cumsum(1).flip(1).double() / weight2.double()
    variance = (weight1[:, :-1] * weight2[:, 1:]).double() * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    low = flat.amin(1)
    high = flat.amax(1)
    inside = (levels[None, :-1] >= low[:, None]) & (levels[None, :-1] < high[:, None])
    variance = torch.where(inside, variance, torch.full_like(variance, -1.0))
    return torch.where(low == high, low, variance.argmax(1))


@dataclass(frozen=True)
class SeedSampler:
    """Random fg/bg seed labels from CAMs, the whole batch at once on the CAMs' device.

    Foreground region: CAM (as uint8, floor(255 C)) above its Otsu threshold clamped to
    ``otsu_clamp``, eroded once by an ``erode_size`` square (the un-eroded region is kept where
    erosion empties it). Background region: the ``bg_fraction`` of pixels with the lowest CAM. A
    constant uint8 CAM has no regions (no seeds), as in F-CAM's code. With ``color_ratio > 0`` the
    foreground region keeps only the pixels whose colour is more than that many times as frequent
    in it as in the image's background region: the CAM's high region spills onto the background
    round the discriminative part, and those pixels look like the background (an addition to
    F-CAM; docs/recipe.md §9). Each call samples
    ``n_seeds`` distinct pixels uniformly from each region of each image (all of them if the region
    is smaller), dilates them by a ``ksz`` square, and marks fg/bg overlaps as ignored.
    """

    n_seeds: int = 10
    bg_fraction: float = 0.3
    ksz: int = 3
    erode_size: int = 11
    otsu_clamp: tuple[int, int] = (1, 254)
    color_ratio: float = 0.0
    color_bits: int = 3

    def __post_init__(self) -> None:
        if self.n_seeds < 0:
            raise FcamError(f"n_seeds must be >= 0, got {self.n_seeds}")
        if not 0.0 <= self.bg_fraction <= 1.0:
            raise FcamError(f"bg_fraction must be in [0, 1], got {self.bg_fraction}")
        for name, size in (("ksz", self.ksz), ("erode_size", self.erode_size)):
            if size < 1 or size % 2 == 0:
                raise FcamError(f"{name} must be an odd positive kernel size, got {size}")
        if self.color_ratio < 0:
            raise FcamError(f"color_ratio must be >= 0 (0 disables the colour filter), got {self.color_ratio}")
        if not 1 <= self.color_bits <= 8:
            raise FcamError(f"color_bits must be in 1..8, got {self.color_bits}")
        if not 0 <= self.otsu_clamp[0] <= self.otsu_clamp[1] <= 255:
            raise FcamError(f"otsu_clamp must be 0 <= low <= high <= 255, got {self.otsu_clamp}")

    def regions(self, cams: Tensor, images: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Boolean (B, H, W) foreground and background regions of (B, H, W) CAMs in [0, 1].

        ``images`` (B, 3, H, W), 0..255, are needed by the colour filter (``color_ratio > 0``).
        """
        if cams.dim() != 3:
            raise ValueError(f"seed sampler expects CAMs (B, H, W), got {tuple(cams.shape)}")
        if not torch.isfinite(cams).all():
            raise ValueError("seed sampler got a CAM with NaN or infinite values")
        batch, height, width = cams.shape
        cams_u8 = (cams.clamp(0.0, 1.0) * 255).to(torch.uint8)
        flat_u8 = cams_u8.reshape(batch, -1)
        informative = (flat_u8.amax(1) > flat_u8.amin(1))[:, None, None]
        threshold = otsu_threshold(cams_u8).clamp(*self.otsu_clamp)
        fg = cams_u8 > threshold[:, None, None].to(torch.uint8)
        eroded = _erode(fg, self.erode_size)
        kept = eroded.flatten(1).any(1)
        fg = torch.where(kept[:, None, None], eroded, fg) & informative

        n_bg = int(self.bg_fraction * height * width)
        lowest = torch.topk(cams.reshape(batch, -1), n_bg, dim=1, largest=False).indices
        bg = torch.zeros(batch, height * width, dtype=torch.bool, device=cams.device)
        bg.scatter_(1, lowest, True)
        bg = bg.reshape(batch, height, width) & informative
        if self.color_ratio > 0:
            if images is None or images.shape[0] != batch or images.shape[-2:] != cams.shape[-2:]:
                raise ValueError("the seed colour filter needs the (B, 3, H, W) images of the CAMs, "
                                 f"got {None if images is None else tuple(images.shape)} for CAMs {tuple(cams.shape)}")
            fg = self._color_filter(fg, bg, images)
        return fg, bg

    def _color_filter(self, fg: Tensor, bg: Tensor, images: Tensor) -> Tensor:
        """Keeps the foreground pixels whose colour is more than ``color_ratio`` times as frequent in
        the foreground region as in the background one (per-image histograms of ``color_bits`` per
        channel); an image whose filtered region would be empty keeps its region."""
        batch = fg.shape[0]
        levels = 1 << self.color_bits
        quant = (images.clamp(0, 255).to(torch.int64) >> (8 - self.color_bits))
        codes = ((quant[:, 0] * levels + quant[:, 1]) * levels + quant[:, 2]).reshape(batch, -1)
        bins = levels ** 3
        codes_all = codes + torch.arange(batch, device=codes.device)[:, None] * bins

        def frequencies(region: Tensor) -> Tensor:
            flat = region.reshape(batch, -1)
            counts = torch.bincount(codes_all[flat], minlength=batch * bins).reshape(batch, bins).float()
            return counts / counts.sum(1, keepdim=True).clamp(min=1.0)

        p_fg = torch.gather(frequencies(fg), 1, codes).reshape(fg.shape)
        p_bg = torch.gather(frequencies(bg), 1, codes).reshape(fg.shape)
        kept = fg & (p_fg > self.color_ratio * p_bg)
        nonempty = kept.flatten(1).any(1)[:, None, None]
        return torch.where(nonempty, kept, fg)

    def centers(self, cams: Tensor, generator: torch.Generator | None = None,
                images: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Boolean (B, H, W) maps of the sampled fg and bg seed pixels, before dilation."""
        fg, bg = self.regions(cams, images)
        return self._sample(fg, generator), self._sample(bg, generator)

    def __call__(self, cams: Tensor, generator: torch.Generator | None = None,
                 images: Tensor | None = None) -> Tensor:
        """(B, H, W) int64 labels: 1 fg seed, 0 bg seed, IGNORE_INDEX elsewhere."""
        fg_centers, bg_centers = self.centers(cams, generator, images)
        fg = _dilate(fg_centers, self.ksz)
        bg = _dilate(bg_centers, self.ksz)
        ignore = torch.full(cams.shape, IGNORE_INDEX, dtype=torch.int64, device=cams.device)
        labels = torch.where(bg & ~fg, torch.zeros_like(ignore), ignore)
        return torch.where(fg & ~bg, torch.ones_like(ignore), labels)

    def _sample(self, region: Tensor, generator: torch.Generator | None) -> Tensor:
        """Uniform sample of min(n_seeds, |region|) distinct pixels of each image's region."""
        batch = region.shape[0]
        flat = region.reshape(batch, -1)
        n_draw = min(self.n_seeds, flat.shape[1])
        # Uniform random keys, -1 outside the region: the top keys are a uniform sample without
        # replacement of the region's pixels.
        keys = torch.rand(flat.shape, generator=generator, device=flat.device)
        keys = torch.where(flat, keys, torch.full_like(keys, -1.0))
        top = torch.topk(keys, n_draw, dim=1)
        picked = torch.zeros_like(flat)
        picked.scatter_(1, top.indices, top.values >= 0)
        return picked.reshape(region.shape)


def _dilate(mask: Tensor, size: int) -> Tensor:
    """Binary dilation of (B, H, W) masks by a size x size square."""
    pooled = F.max_pool2d(mask[:, None].float(), size, stride=1, padding=size // 2)
    return pooled[:, 0] > 0


def _erode(mask: Tensor, size: int) -> Tensor:
    """Binary erosion of (B, H, W) masks by a size x size square; outside the image does not erode."""
    pooled = F.max_pool2d((~mask)[:, None].float(), size, stride=1, padding=size // 2)
    return pooled[:, 0] == 0
