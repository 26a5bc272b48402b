"""The wsolevaluation metrics, exact and fast: MaxBoxAcc, MaxBoxAccV2, PxAP, top-k accuracy.

Importing this package loads numpy and OpenCV only (no torch), so worker processes that score
maps stay light.
"""

from fcam.metrics import reference
from fcam.metrics.box_accuracy import BoxEvaluator, box_hits, box_hits_from_levels
from fcam.metrics.boxes import box_iou
from fcam.metrics.classification import topk_correct
from fcam.metrics.pixel_ap import MaskEvaluator, pixel_histograms
from fcam.metrics.scoremap import gray_levels, normalize_scoremap, resize_scoremap, score_thresholds

__all__ = [
    "BoxEvaluator",
    "MaskEvaluator",
    "box_hits",
    "box_hits_from_levels",
    "box_iou",
    "gray_levels",
    "normalize_scoremap",
    "pixel_histograms",
    "reference",
    "resize_scoremap",
    "score_thresholds",
    "topk_correct",
]
