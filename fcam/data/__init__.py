"""Data: wsolevaluation metadata, ground truth at evaluation size, the image Dataset, the
converter of your own images (``fcam-prepare``) and the synthetic dataset of the demo and tests.

The metadata readers import without torch or OpenCV; the other names load their module on
first use (PEP 562), so ``from fcam.data import DATASETS`` stays light.
"""

from __future__ import annotations

import importlib

from fcam.data.metadata import DATASETS, Metadata, SplitRecords, load_metadata

_LAZY = {
    "WSOLDataset": "fcam.data.dataset",
    "load_gt_mask": "fcam.data.masks",
    "MaskCache": "fcam.data.mask_cache",
    "generate_synthetic": "fcam.data.synthetic",
    "prepare_dataset": "fcam.data.prepare",
}

__all__ = ["DATASETS", "MaskCache", "Metadata", "SplitRecords", "WSOLDataset", "generate_synthetic", "load_gt_mask", "load_metadata",
           "prepare_dataset"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fcam.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
