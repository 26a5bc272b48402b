"""Checkpoints written atomically, and read back with a check of what they hold.

A checkpoint is a dict with ``kind`` ('classifier' or 'fcam'), ``config`` (the resolved config
as a dict), ``epoch`` and the state dicts of the run. It is written to a temporary file in the
same folder, flushed to disk and renamed over the target, so a kill during the write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcam.errors import FcamError

KINDS = ("classifier", "fcam")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint; ``kind`` (if given) must match the one it was saved as."""
    path = Path(path)
    if not path.is_file():
        raise FcamError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several unrelated types for a corrupt file
        raise FcamError(f"{path}: not a readable fcam checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("kind") not in KINDS:
        raise FcamError(f"{path}: not an fcam checkpoint (expected a file written by fcam-train-cls or fcam-train-decoder)")
    if kind is not None and state["kind"] != kind:
        raise FcamError(f"{path}: is a '{state['kind']}' checkpoint, expected a '{kind}' checkpoint")
    return state


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, so a resumed run continues the same random sequence."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
