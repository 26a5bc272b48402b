"""Per-image top-k classification correctness, the class half of top-1/top-5 localization."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch


def topk_correct(
    logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | Sequence[int], ks: Sequence[int] = (1, 5)
) -> dict[int, np.ndarray]:
    """For each k, a bool array (B,): is the label among the k highest logits (k capped at the class count)."""
    import torch  # only here: fcam.metrics imports without torch

    logits = torch.as_tensor(logits)
    labels = torch.as_tensor(labels, device=logits.device).reshape(-1, 1)
    if logits.ndim != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"expected logits (B, C) and B labels, got {tuple(logits.shape)} and {labels.shape[0]}")
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels
    return {k: hits[:, :k].any(dim=1).cpu().numpy() for k in ks}
