"""Per-map min-max normalization of score maps, as wsolevaluation's ``normalize_scoremap``."""

import torch
from torch import Tensor


def minmax_normalize(maps: Tensor) -> Tensor:
    """Rescale each map of ``maps`` (B,h,w) to [0, 1] independently.

    As in wsolevaluation, a map holding any NaN (here: any non-finite value) and a
    constant map both become all zeros; every other map spans exactly [0, 1].
    """
    flat = maps.flatten(1)
    low = flat.amin(dim=1)
    high = flat.amax(dim=1)
    valid = torch.isfinite(flat).all(dim=1) & (high > low)
    span = torch.where(valid, high - low, torch.ones_like(high))
    scaled = (maps - low[:, None, None]) / span[:, None, None]
    return torch.where(valid[:, None, None], scaled, torch.zeros_like(scaled))
