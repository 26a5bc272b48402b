"""Data: wsolevaluation metadata, ground truth at evaluation size, the image Dataset and the
synthetic dataset the demo and tests train on."""

from fcam.data.dataset import WSOLDataset
from fcam.data.masks import load_gt_mask
from fcam.data.metadata import DATASETS, Metadata, load_metadata
from fcam.data.synthetic import generate_synthetic

__all__ = ["DATASETS", "Metadata", "WSOLDataset", "generate_synthetic", "load_gt_mask", "load_metadata"]
