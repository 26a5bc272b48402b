"""Partial cross-entropy: cross-entropy on the seed pixels only (the first term of F-CAM's Eq. 3)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["IGNORE_INDEX", "partial_cross_entropy"]

IGNORE_INDEX = -100
"""Label of the pixels that are not seeds (PyTorch's default ignore index)."""


def partial_cross_entropy(seg_logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of (B, K, H, W) logits over the pixels whose (B, H, W) label is not ignored.

    With no labelled pixel the loss is 0 and still part of the graph (a zero gradient).
    """
    if seg_logits.dim() != 4 or labels.shape != seg_logits.shape[:1] + seg_logits.shape[2:]:
        raise ValueError(
            f"partial cross-entropy expects logits (B, K, H, W) and labels (B, H, W), got "
            f"{tuple(seg_logits.shape)} and {tuple(labels.shape)}"
        )
    total = F.cross_entropy(seg_logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    count = (labels != IGNORE_INDEX).sum()
    return total / count.clamp(min=1)
