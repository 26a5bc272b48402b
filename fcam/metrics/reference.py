"""The wsolevaluation protocol written out literally: the oracle of the tests and the baseline of
the benchmark.

A readable port of the evaluation of clovaai/wsolevaluation (Choe et al., CVPR 2020), step by
step and slow on purpose: ground-truth boxes scaled to 224 by ``int(x * 224 / w)``, a loop over
every score threshold calling OpenCV's contour finder, the largest contour (MaxBoxAcc) or all of
them (MaxBoxAccV2), IoU against every GT box, the best accuracy over thresholds; for PxAP the
masks read from PNG files, foreground and background score histograms and the right Riemann sum
of precision over recall. Top-1/top-5 localization, which wsolevaluation does not compute, follow
the same per-threshold loop. It imports nothing from the rest of :mod:`fcam.metrics`, so a
mistake in the fast path cannot hide in code both share.
"""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

RESIZE_LENGTH = 224


def resize_box(box: Sequence[int], image_size: tuple[int, int], resize_size: tuple[int, int]) -> tuple[int, ...]:
    """One (x0, y0, x1, y1) box from an image of ``image_size`` (w, h) to ``resize_size`` (w, h).

    Each coordinate is multiplied by the new length first, then divided by the old one, in
    float64, then truncated.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = (float(v) for v in image_size)
    new_width, new_height = (float(v) for v in resize_size)
    return (int(x0 * new_width / width), int(y0 * new_height / height),
            int(x1 * new_width / width), int(y1 * new_height / height))


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """A copy of ``cam`` min-max normalized to [0, 1]; zeros when it has a NaN or is constant."""
    cam = np.array(cam, dtype=np.float64)
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def threshold_list(cam_curve_interval: float) -> list[float]:
    """The score thresholds 0, interval, 2 * interval, ... below 1."""
    return list(np.arange(0, 1, cam_curve_interval))


def boxes_at_threshold(scoremap: np.ndarray, threshold: float, multi_contour: bool) -> np.ndarray:
    """Boxes (k, 4) of the contours of ``scoremap`` above ``threshold``: all of them, or the largest.

    The map becomes uint8 by ``(map * 255)`` truncated; a pixel is foreground when its level is
    above ``int(threshold * max level)``. No contour gives the single box [0, 0, 0, 0].
    """
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    _, binary = cv2.threshold(image, int(threshold * np.max(image)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.asarray([[0, 0, 0, 0]])
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        # One past the last pixel, clipped to the last row or column.
        boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return np.asarray(boxes)


def multiple_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of inclusive boxes (a box spans x1 - x0 + 1 columns), the protocol's way:
    the intersection is itself a box, empty where its corners cross; 0 where the union is not positive."""
    pairs_a = np.repeat(np.asarray(boxes_a).reshape(-1, 4), len(boxes_b), axis=0)
    pairs_b = np.tile(np.asarray(boxes_b).reshape(-1, 4), (len(boxes_a), 1))
    inner = np.concatenate([np.maximum(pairs_a[:, :2], pairs_b[:, :2]), np.minimum(pairs_a[:, 2:], pairs_b[:, 2:])], 1)
    area_inner = (inner[:, 2] - inner[:, 0] + 1) * (inner[:, 3] - inner[:, 1] + 1)
    area_inner[(inner[:, 0] > inner[:, 2]) | (inner[:, 1] > inner[:, 3])] = 0
    area_a = (pairs_a[:, 2] - pairs_a[:, 0] + 1) * (pairs_a[:, 3] - pairs_a[:, 1] + 1)
    area_b = (pairs_b[:, 2] - pairs_b[:, 0] + 1) * (pairs_b[:, 3] - pairs_b[:, 1] + 1)
    union = area_a + area_b - area_inner
    ious = np.zeros(len(union))
    positive = union > 0
    ious[positive] = area_inner[positive] / union[positive]
    return ious.reshape(len(boxes_a), len(boxes_b))


class BoxEvaluator:
    """wsolevaluation's box evaluator: per score threshold, how many images have a box with
    IoU >= each IoU threshold. ``multi_contour=False`` gives MaxBoxAcc, ``True`` MaxBoxAccV2.

    With class correctness, it also counts per threshold the images whose box has IoU >= 0.5 and
    whose top-1 (top-5) class is right: the top-1 (top-5) localization curves.
    """

    def __init__(self, thresholds: list[float], iou_thresholds: Sequence[int], multi_contour: bool) -> None:
        self.thresholds = thresholds
        self.iou_thresholds = list(iou_thresholds)
        self.multi_contour = multi_contour
        self.count = 0
        self.num_correct = {iou: np.zeros(len(thresholds)) for iou in self.iou_thresholds}
        self.top_k_correct = {1: np.zeros(len(thresholds)), 5: np.zeros(len(thresholds))}

    def accumulate(self, scoremap: np.ndarray, gt_boxes: np.ndarray, class_correct: dict[int, bool] | None = None):
        # As wsolevaluation: the boxes of every threshold in one IoU matrix, then the best per threshold.
        boxes_per_threshold = [boxes_at_threshold(scoremap, t, self.multi_contour) for t in self.thresholds]
        ious = multiple_iou(np.concatenate(boxes_per_threshold, axis=0), gt_boxes).max(axis=1)
        ends = np.cumsum([len(boxes) for boxes in boxes_per_threshold])
        best_ious = np.asarray([ious[end - len(boxes) : end].max() for end, boxes in zip(ends, boxes_per_threshold)])
        for iou in self.iou_thresholds:
            self.num_correct[iou][best_ious >= iou / 100] += 1
        if class_correct is not None:
            for k, correct in class_correct.items():
                if correct:
                    self.top_k_correct[k][best_ious >= 0.5] += 1
        self.count += 1

    def curve(self, iou: int) -> np.ndarray:
        return self.num_correct[iou] * 100.0 / float(self.count)

    def compute(self) -> list[float]:
        """The best accuracy over score thresholds, per IoU threshold."""
        return [self.curve(iou).max() for iou in self.iou_thresholds]


def box_accuracy(
    scoremaps: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    top1_correct: np.ndarray | None = None,
    top5_correct: np.ndarray | None = None,
    cam_curve_interval: float = 0.001,
    iou_thresholds: Sequence[int] = (30, 50, 70),
) -> dict:
    """MaxBoxAcc (largest contour, IoU 50), MaxBoxAccV2 (all contours, mean over ``iou_thresholds``)
    and top-1/5 localization under both rules, keyed as :meth:`fcam.metrics.BoxEvaluator.compute`."""
    thresholds = threshold_list(cam_curve_interval)
    v1 = BoxEvaluator(thresholds, list(iou_thresholds), multi_contour=False)
    v2 = BoxEvaluator(thresholds, list(iou_thresholds), multi_contour=True)
    for i, (scoremap, boxes) in enumerate(zip(scoremaps, gt_boxes)):
        class_correct = None if top1_correct is None else {1: bool(top1_correct[i]), 5: bool(top5_correct[i])}
        v1.accumulate(scoremap, np.asarray(boxes), class_correct)
        v2.accumulate(scoremap, np.asarray(boxes))
    v1_curve = v1.curve(50)
    best = int(np.argmax(v1_curve))
    result = {
        "MaxBoxAcc": float(v1.compute()[list(iou_thresholds).index(50)]),
        "best_threshold": float(thresholds[best]),
        "num_images": v1.count,
        "curves": {"thresholds": np.asarray(thresholds), "v1_iou50": v1_curve},
    }
    for iou, accuracy in zip(iou_thresholds, v2.compute()):
        result["curves"][f"v2_iou{iou}"] = v2.curve(iou)
        result[f"MaxBoxAccV2_IoU{iou}"] = float(accuracy)
    result["MaxBoxAccV2"] = float(np.average(v2.compute()))
    if top1_correct is not None:
        for k in (1, 5):
            curve = v1.top_k_correct[k] * 100.0 / v1.count
            result[f"top{k}_loc"] = float(curve[best])
            result[f"top{k}_loc_maxcurve"] = float(curve.max())
    return result


def load_mask_image(path: str, size: tuple[int, int]) -> np.ndarray:
    """A mask PNG read as grayscale float32 and resized to ``size`` (w, h) by nearest neighbour."""
    mask = np.float32(cv2.imread(path, cv2.IMREAD_GRAYSCALE))
    return cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)


def get_mask(mask_root: str, mask_paths: Sequence[str], ignore_path: str | None) -> np.ndarray:
    """The GT of one image at 224x224, uint8: 1 foreground (any instance mask > 0.5), 255 ignored
    (ignore mask > 0.5 and not foreground), 0 background. Without an ignore path nothing is ignored."""
    size = (RESIZE_LENGTH, RESIZE_LENGTH)
    instances = [load_mask_image(os.path.join(mask_root, path), size) > 0.5 for path in mask_paths]
    foreground = np.stack(instances, axis=0).any(axis=0)
    if ignore_path:
        ignore_box = load_mask_image(os.path.join(mask_root, ignore_path), size) > 0.5
    else:
        ignore_box = np.zeros_like(foreground)
    ignore = np.logical_and(ignore_box, np.logical_not(foreground))
    return foreground.astype(np.uint8) + 255 * ignore.astype(np.uint8)


class MaskEvaluator:
    """wsolevaluation's mask evaluator: histograms of the scores of foreground pixels and of
    non-ignored background pixels over the bins [t_0, t_1), ..., [t_last, 1), [1, 2), [2, 3]."""

    def __init__(self, thresholds: list[float], mask_root: str | None = None) -> None:
        self.mask_root = mask_root
        self.edges = np.append(thresholds, [1.0, 2.0, 3.0])
        self.true_hist = np.zeros(len(thresholds) + 2)
        self.false_hist = np.zeros(len(thresholds) + 2)

    def accumulate(self, scoremap: np.ndarray, mask_paths: Sequence[str], ignore_path: str | None) -> None:
        """Score one map against the masks read from ``mask_root``."""
        self.accumulate_mask(scoremap, get_mask(self.mask_root, mask_paths, ignore_path))

    def accumulate_mask(self, scoremap: np.ndarray, gt_mask: np.ndarray) -> None:
        """Score one map against a GT coded as :func:`get_mask` codes it."""
        self.true_hist += np.histogram(scoremap[gt_mask == 1], bins=self.edges)[0]
        self.false_hist += np.histogram(scoremap[gt_mask == 0], bins=self.edges)[0]

    def compute(self) -> float:
        """PxAP in percent: precision and recall from the top bin down, right Riemann sum."""
        tp = self.true_hist[::-1].cumsum()
        fn = self.true_hist.sum() - tp
        fp = self.false_hist[::-1].cumsum()
        if ((tp + fn) <= 0).all():
            raise RuntimeError("no positive pixel in the ground truth")
        counted = (tp + fp) != 0
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        return float((precision[1:] * np.diff(recall))[counted[1:]].sum() * 100)


def pixel_ap(
    scoremaps: Sequence[np.ndarray],
    gt_masks: Sequence[np.ndarray],
    ignore_masks: Sequence[np.ndarray],
    cam_curve_interval: float = 0.001,
) -> float:
    """PxAP (percent) of maps against in-memory boolean foreground and ignore masks."""
    evaluator = MaskEvaluator(threshold_list(cam_curve_interval))
    for scoremap, foreground, ignore in zip(scoremaps, gt_masks, ignore_masks):
        ignored = np.logical_and(ignore, np.logical_not(foreground))
        evaluator.accumulate_mask(scoremap, foreground.astype(np.uint8) + 255 * ignored.astype(np.uint8))
    return evaluator.compute()
