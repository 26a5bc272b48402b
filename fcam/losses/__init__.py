"""F-CAM's decoder training loss: seeds, partial cross-entropy, dense CRF and size constraint."""

from fcam.losses.crf import DenseCRFLoss
from fcam.losses.fcam_loss import FCAMLoss
from fcam.losses.pce import IGNORE_INDEX, partial_cross_entropy
from fcam.losses.permutohedral import permutohedral_filter
from fcam.losses.seeds import SeedSampler, otsu_threshold
from fcam.losses.size import ExtendedLogBarrier, SizeConstraintLoss

__all__ = [
    "IGNORE_INDEX",
    "DenseCRFLoss",
    "ExtendedLogBarrier",
    "FCAMLoss",
    "SeedSampler",
    "SizeConstraintLoss",
    "otsu_threshold",
    "partial_cross_entropy",
    "permutohedral_filter",
]
