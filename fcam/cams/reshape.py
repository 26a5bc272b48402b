"""Reshape transforms for token models: the target layer's output to maps (B,K,h,w).

Pass one as ``reshape_transform`` to :func:`fcam.cams.compute_cams` (or in
:class:`fcam.cams.CamOptions`). Each one only drops and rearranges entries, so it applies to
the layer's output and to the gradients w.r.t. it alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor

from fcam.errors import FcamError


def vit_reshape(grid: int | tuple[int, int] | None = None, prefix_tokens: int = 1) -> Callable[[Tensor], Tensor]:
    """Vision Transformer tokens (B, prefix_tokens + h*w, D) -> (B, D, h, w).

    Args:
        grid: the patch grid (h, w) (an int for a square one); None infers a square grid from
            the number of patch tokens.
        prefix_tokens: tokens before the patch tokens, dropped (1: torchvision's class token).

    Returns:
        The transform.
    """
    def transform(tokens: Tensor) -> Tensor:
        if tokens.ndim != 3:
            raise FcamError(f"vit_reshape expects tokens (B,T,D), got shape {tuple(tokens.shape)}")
        patches = tokens[:, prefix_tokens:]
        count = patches.shape[1]
        if grid is None:
            side = math.isqrt(count)
            height, width = side, side
        else:
            height, width = (grid, grid) if isinstance(grid, int) else grid
        if height * width != count:
            raise FcamError(f"vit_reshape: {count} patch tokens (after {prefix_tokens} prefix tokens) do not "
                            f"form a {height}x{width} grid; pass grid=(h, w)")
        return patches.unflatten(1, (height, width)).permute(0, 3, 1, 2)

    return transform


def swin_reshape() -> Callable[[Tensor], Tensor]:
    """Channels-last maps (B, h, w, C), as torchvision's Swin Transformer blocks output -> (B, C, h, w).

    Returns:
        The transform.
    """
    def transform(maps: Tensor) -> Tensor:
        if maps.ndim != 4:
            raise FcamError(f"swin_reshape expects (B,h,w,C), got shape {tuple(maps.shape)}")
        return maps.permute(0, 3, 1, 2)

    return transform
