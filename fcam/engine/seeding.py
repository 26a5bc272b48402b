"""Seeding every generator a run draws from."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices); ranks get distinct but reproducible streams."""
    value = seed + 7919 * rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)

