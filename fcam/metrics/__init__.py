"""The wsolevaluation metrics, exact and fast: MaxBoxAcc, MaxBoxAccV2, PxAP, top-k accuracy."""

from fcam.metrics import reference
from fcam.metrics.box_accuracy import BoxEvaluator
from fcam.metrics.boxes import box_iou, scale_boxes
from fcam.metrics.classification import topk_correct
from fcam.metrics.pixel_ap import MaskEvaluator
from fcam.metrics.scoremap import check_scoremap, normalize_scoremap, resize_scoremap, score_thresholds

__all__ = [
    "BoxEvaluator",
    "MaskEvaluator",
    "box_iou",
    "check_scoremap",
    "normalize_scoremap",
    "reference",
    "resize_scoremap",
    "scale_boxes",
    "score_thresholds",
    "topk_correct",
]
