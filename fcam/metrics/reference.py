"""The wsolevaluation box and mask metrics written literally: one contour search per threshold.

Slow on purpose. It follows clovaai/wsolevaluation step by step (a loop over every score
threshold calling OpenCV's contour finder, once for MaxBoxAcc and once for MaxBoxAccV2) and
is the oracle the fast evaluators are tested against and the baseline the benchmark times.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from fcam.metrics.boxes import box_iou
from fcam.metrics.scoremap import score_thresholds


def boxes_at_threshold(scoremap: np.ndarray, threshold: float, multi_contour: bool) -> np.ndarray:
    """Boxes (k, 4) of the contours of ``scoremap`` above ``threshold``; all of them or only the largest."""
    gray = (scoremap * 255).astype(np.uint8)
    mask = (gray > int(threshold * gray.max())).astype(np.uint8)
    contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if not contours:
        return np.zeros((1, 4), dtype=np.int64)
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    height, width = mask.shape
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return np.array(boxes, dtype=np.int64)


def box_accuracy(
    scoremaps: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    top1_correct: np.ndarray | None = None,
    top5_correct: np.ndarray | None = None,
    cam_curve_interval: float = 0.001,
    iou_thresholds: Sequence[int] = (30, 50, 70),
) -> dict:
    """MaxBoxAcc, MaxBoxAccV2 and top-1/5 localization, keyed as :meth:`BoxEvaluator.compute`."""
    thresholds = score_thresholds(cam_curve_interval)
    v1_hits = np.zeros(len(thresholds))
    v2_hits = {iou: np.zeros(len(thresholds)) for iou in iou_thresholds}
    top1_hits, top5_hits = np.zeros(len(thresholds)), np.zeros(len(thresholds))
    for i, (scoremap, gt) in enumerate(zip(scoremaps, gt_boxes)):
        for j, threshold in enumerate(thresholds):
            v1_correct = box_iou(boxes_at_threshold(scoremap, threshold, False), gt).max() >= 0.5
            v2_iou = box_iou(boxes_at_threshold(scoremap, threshold, True), gt).max()
            v1_hits[j] += v1_correct
            for iou in iou_thresholds:
                v2_hits[iou][j] += v2_iou >= iou / 100
            if top1_correct is not None:
                top1_hits[j] += v1_correct and top1_correct[i]
                top5_hits[j] += v1_correct and top5_correct[i]
    num_images = len(scoremaps)
    v1_curve = v1_hits * 100.0 / num_images
    best = int(np.argmax(v1_curve))
    result = {
        "MaxBoxAcc": float(v1_curve.max()),
        "best_threshold": float(thresholds[best]),
        "num_images": num_images,
        "curves": {"thresholds": thresholds, "v1_iou50": v1_curve},
    }
    v2_max = []
    for iou in iou_thresholds:
        curve = v2_hits[iou] * 100.0 / num_images
        result["curves"][f"v2_iou{iou}"] = curve
        result[f"MaxBoxAccV2_IoU{iou}"] = float(curve.max())
        v2_max.append(curve.max())
    result["MaxBoxAccV2"] = float(np.mean(v2_max))
    if top1_correct is not None:
        result["top1_loc"] = float(top1_hits[best] * 100.0 / num_images)
        result["top5_loc"] = float(top5_hits[best] * 100.0 / num_images)
    return result


def pixel_ap(
    scoremaps: Sequence[np.ndarray],
    gt_masks: Sequence[np.ndarray],
    ignore_masks: Sequence[np.ndarray],
    cam_curve_interval: float = 0.001,
) -> float:
    """PxAP (percent): histograms of foreground and of non-ignored background scores, right Riemann sum."""
    edges = np.append(score_thresholds(cam_curve_interval), [1.0, 2.0, 3.0])
    fg_hist = np.zeros(len(edges) - 1)
    bg_hist = np.zeros(len(edges) - 1)
    for scoremap, gt, ignore in zip(scoremaps, gt_masks, ignore_masks):
        fg_hist += np.histogram(scoremap[gt], bins=edges)[0]
        bg_hist += np.histogram(scoremap[~gt & ~ignore], bins=edges)[0]
    tp = fg_hist[::-1].cumsum()
    fp = bg_hist[::-1].cumsum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / fg_hist.sum()
    counted = (tp + fp)[1:] != 0
    return float((precision[1:] * np.diff(recall))[counted].sum() * 100)
