"""Data: wsolevaluation metadata, ground truth at evaluation size, the image Dataset and the
synthetic dataset the demo and tests train on."""

from fcam.data.masks import load_gt_mask
from fcam.data.metadata import DATASETS, Metadata, load_metadata

__all__ = ["DATASETS", "Metadata", "WSOLDataset", "generate_synthetic", "load_gt_mask", "load_metadata"]

# Metadata and masks import without torch (scoring saved maps needs no more); the image Dataset
# (torch, PIL) and the synthetic generator (scikit-image) load on first use (PEP 562).
_LAZY = {"WSOLDataset": "fcam.data.dataset", "generate_synthetic": "fcam.data.synthetic"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
