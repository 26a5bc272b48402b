"""Validation of the additive count states that the streaming evaluators exchange."""

from __future__ import annotations

import numpy as np


def checked_counts(state: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` as int64 arrays, after checking it has the keys and shapes of ``expected``."""
    if set(state) != set(expected):
        raise ValueError(f"state keys {sorted(state)} differ from {sorted(expected)}")
    for key, value in state.items():
        if np.shape(value) != expected[key].shape:
            raise ValueError(f"state[{key!r}] has shape {np.shape(value)}, expected {expected[key].shape}")
    return {key: np.array(value, dtype=np.int64) for key, value in state.items()}
