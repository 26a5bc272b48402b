"""The additive count states that the streaming evaluators keep and exchange between processes."""

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


class CountsState:
    """What both evaluators share: a dict of int64 count arrays (``self._state``), additive over
    disjoint sets of images, that other processes can sum; subclasses define its empty value."""

    _state: dict[str, np.ndarray]

    def _empty_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the counts.

        Returns:
            int64 arrays by name; every entry is additive over disjoint sets of images.
        """
        return {key: value.copy() for key, value in self._state.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the counts, e.g. by the sum of the states of all ranks.

        Args:
            state: arrays with the keys and shapes that :meth:`state` returns.
        """
        self._state = checked_counts(state, self._empty_state())
