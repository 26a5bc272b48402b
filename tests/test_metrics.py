"""The wsolevaluation protocol (docs/protocol.md), rule by rule, and the fast evaluators against the oracle."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch

from fcam.data import Metadata
from fcam.errors import FcamError
from fcam.metrics import (
    BoxEvaluator,
    MaskEvaluator,
    box_hits,
    gray_levels,
    normalize_scoremap,
    pixel_histograms,
    reference,
    resize_scoremap,
    topk_correct,
)
from fcam.metrics.boxes import box_iou
from fcam.metrics.scoremap import score_thresholds
from fcam.metrics.level_components import filled_levels, level_boxes
from fcam.metrics.threshold_boxes import max_ious_per_threshold


def reference_ious(scoremap, gt, thresholds):
    """Per-threshold best IoUs of the largest contour (V1) and of all contours (V2), the slow way."""
    v1 = [reference.multiple_iou(reference.boxes_at_threshold(scoremap, t, False), gt).max() for t in thresholds]
    v2 = [reference.multiple_iou(reference.boxes_at_threshold(scoremap, t, True), gt).max() for t in thresholds]
    return np.array(v1), np.array(v2)


def fast_ious(scoremap, gt, thresholds):
    return max_ious_per_threshold(gray_levels(scoremap), gt, thresholds)


IMPLEMENTATIONS = {"fast": fast_ious, "reference": reference_ious}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def ious(request):
    return IMPLEMENTATIONS[request.param]


def from_levels(levels: np.ndarray) -> np.ndarray:
    """A map whose uint8 conversion gives exactly ``levels``."""
    return (np.asarray(levels, dtype=np.float64) + 0.5) / 255


def at(threshold: float) -> np.ndarray:
    return np.array([threshold])


def make_map(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    smooth = cv2.resize(rng.random((int(rng.integers(3, 12)),) * 2), (size, size), interpolation=cv2.INTER_CUBIC)
    if kind == "smooth":
        scoremap = smooth
    elif kind == "noisy":
        scoremap = smooth + 0.3 * rng.random((size, size))
    elif kind == "holed":
        yy, xx = np.mgrid[:size, :size]
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        radius = np.hypot(yy - cy, xx - cx)
        scoremap = np.exp(-(((radius - size / 5) / (size / 12)) ** 2)) + 0.2 * smooth
    elif kind == "plateau":
        scoremap = np.round(smooth * 5)
    elif kind == "random":
        scoremap = rng.random((size, size))
    elif kind == "constant":
        return np.full((size, size), rng.uniform(0, 1))
    elif kind == "lowmax":
        return normalize_scoremap(smooth) * rng.uniform(0.001, 0.9)
    return normalize_scoremap(scoremap)


def make_boxes(rng: np.random.Generator, scoremap: np.ndarray) -> np.ndarray:
    """1-3 boxes, some around a thresholded part of the map (so that hits occur), some random."""
    size = scoremap.shape[0]
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        ys, xs = np.nonzero(scoremap >= rng.uniform(0.2, 0.9) * scoremap.max())
        if rng.random() < 0.7 and len(xs):
            box = [xs.min(), ys.min(), xs.max(), ys.max()] + rng.integers(-2, 3, 4)
        else:
            box = np.concatenate([np.sort(rng.integers(0, size, 2)), np.sort(rng.integers(0, size, 2))])[[0, 2, 1, 3]]
        box = np.clip(box, 0, size - 1)
        boxes.append([min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])])
    return np.array(boxes, dtype=np.int64)


KINDS = ("smooth", "noisy", "holed", "plateau", "random", "constant", "lowmax")


# --- box scaling -------------------------------------------------------------------------------


def test_gt_boxes_multiply_before_dividing():
    cases = [(x, w) for w in range(100, 700) for x in range(w) if int(x * 224.0 / w) != int(x * (224.0 / w))]
    assert cases, "no coordinate where the two float64 orders differ"
    cases = cases[:50]
    ids = [f"img{i}.jpg" for i in range(len(cases))]
    boxes = {i: np.array([[x, x % 300, x, x % 300]]) for i, (x, _) in zip(ids, cases)}
    sizes = {i: (w, 300) for i, (_, w) in zip(ids, cases)}
    meta = Metadata("CUB", "test", "box", ids, [0] * len(ids), sizes, boxes, None)
    for got, image_id, (x, w) in zip(meta.gt_boxes(224), ids, cases):
        assert got[0, 0] == int(x * 224.0 / w) == got[0, 2]
        assert tuple(got[0]) == reference.resize_box(boxes[image_id][0], sizes[image_id], (224, 224))
        assert got.dtype == np.int64


# --- box extraction at a threshold ---------------------------------------------------------------


def test_uint8_conversion_truncates(ious):
    levels = np.zeros((20, 20))
    levels[2:5, 2:5] = 255
    scoremap = from_levels(levels)
    scoremap[10:15, 10:15] = 127.9 / 255  # truncates to 127, would round to 128
    gt = np.array([[10, 10, 15, 15]])
    _, v2 = ious(scoremap, gt, np.array([0.4, 0.5]))  # cutoffs 102 and 127
    assert v2[0] == 1.0 and v2[1] < 0.01


def test_foreground_is_strictly_above_the_cutoff(ious):
    levels = np.zeros((20, 20))
    levels[2:5, 2:5] = 255
    levels[10:15, 10:15] = 102
    gt = np.array([[10, 10, 15, 15]])
    _, v2 = ious(from_levels(levels), gt, np.array([0.399, 0.4]))  # cutoffs 101 and 102
    assert int(0.4 * 255) == 102
    assert v2[0] == 1.0 and v2[1] < 0.01


def test_cutoff_is_truncated_product_with_the_map_maximum(ious):
    levels = np.zeros((20, 20))
    levels[2:5, 2:5] = 200  # the maximum is 200, not 255
    levels[10:15, 10:15] = 100
    gt = np.array([[10, 10, 15, 15]])
    # 0.45 * 200 = 90 (0.45 * 255 = 114 would drop the blob); 0.4985 * 200 = 99.7 -> 99 (rounding: 100)
    _, v2 = ious(from_levels(levels), gt, np.array([0.45, 0.4985, 0.5]))
    assert list(v2 >= 0.99) == [True, True, False]


def test_box_is_one_past_the_last_pixel_clipped_at_the_border(ious):
    levels = np.zeros((16, 16))
    levels[3:7, 2:6] = 255  # columns 2..5, rows 3..6
    assert ious(from_levels(levels), np.array([[2, 3, 6, 7]]), at(0.5))[0][0] == 1.0
    levels[:] = 0
    levels[10:, 12:] = 255  # touches the right and bottom edges
    assert ious(from_levels(levels), np.array([[12, 10, 15, 15]]), at(0.5))[0][0] == 1.0


def test_empty_mask_gives_the_box_0000_scored_as_one_pixel(ious):
    scoremap = np.zeros((16, 16))
    v1, v2 = ious(scoremap, np.array([[0, 0, 1, 1]]), np.array([0.0, 0.5]))
    assert np.array_equal(v1, [0.25, 0.25]) and np.array_equal(v2, [0.25, 0.25])


def test_hole_contours_count_in_v2_only(ious):
    levels = np.zeros((20, 20))
    levels[2:14, 3:15] = 255
    levels[5:9, 6:10] = 0  # hole: rows 5..8, columns 6..9
    hole_box = np.array([[5, 4, 11, 10]])  # grown by one pixel, then one past the last
    v1, v2 = ious(from_levels(levels), hole_box, at(0.5))
    assert v2[0] == 1.0 and v1[0] < 0.5


def test_v1_keeps_the_contour_of_largest_polygon_area(ious):
    levels = np.zeros((24, 24))
    levels[1:4, 1:20] = 255  # 57 pixels, polygon area 2 * 18 = 36
    levels[8:15, 8:15] = 255  # 49 pixels, polygon area 6 * 6 = 36 -> a tie
    levels[18:23, 2:9] = 255  # 35 pixels, area 4 * 6 = 24
    thin, square = np.array([[1, 1, 20, 4]]), np.array([[8, 8, 15, 15]])
    got = [ious(from_levels(levels), gt, at(0.5))[0][0] for gt in (thin, square)]
    ref = [reference_ious(from_levels(levels), gt, at(0.5))[0][0] for gt in (thin, square)]
    assert got == ref and sorted(got)[1] == 1.0
    levels[8:15, 15] = 255  # the square's polygon grows to 6 * 7 = 42 and wins alone
    assert ious(from_levels(levels), np.array([[8, 8, 16, 15]]), at(0.5))[0][0] == 1.0


@pytest.mark.parametrize("iou", [box_iou, reference.multiple_iou])
def test_inclusive_iou(iou):
    assert iou(np.array([[0, 0, 1, 1]]), np.array([[1, 1, 2, 2]]))[0, 0] == 1 / 7
    assert iou(np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]]))[0, 0] == 1.0
    assert iou(np.array([[0, 0, 3, 3]]), np.array([[5, 5, 6, 6]]))[0, 0] == 0.0
    assert iou(np.array([[3, 3, 1, 1]]), np.array([[3, 3, 1, 1]]))[0, 0] == 0.0  # degenerate union


def test_tree_boxes_are_components_and_grown_holes():
    """RETR_TREE boxes: 8-connected components plus 4-connected holes grown by 1 px (docs/protocol.md)."""
    rng = np.random.default_rng(0)
    holes = 0
    for _ in range(150):
        size = int(rng.integers(6, 30))
        mask = (rng.random((size, size)) < rng.uniform(0.2, 0.8)).astype(np.uint8)
        contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        tree = sorted(
            (x, y, min(x + w, size - 1), min(y + h, size - 1)) for x, y, w, h in map(cv2.boundingRect, contours)
        )
        expected = []
        for image, connectivity, grow in ((mask, 8, 0), (1 - mask, 4, 1)):
            _, _, stats, _ = cv2.connectedComponentsWithStats(image, connectivity=connectivity)
            for x, y, w, h, _ in stats[1:]:
                if grow == 0 or x > 0 and y > 0 and x + w < size and y + h < size:
                    expected.append((x - grow, y - grow, min(x + w + grow, size - 1), min(y + h + grow, size - 1)))
        assert tree == sorted(expected)
        holes += len(expected) - len(cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0])
        if contours:
            areas = [cv2.contourArea(c) for c in contours]
            hierarchy = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[1][0]
            assert hierarchy[int(np.argmax(areas)), 3] == -1  # the largest contour is never a hole
    assert holes > 100


# --- fast evaluator against the oracle -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_fast_ious_equal_reference_on_small_maps(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    thresholds = score_thresholds(0.001)
    for _ in range(6):
        scoremap = make_map(rng, kind, int(rng.integers(24, 48)))
        gt = make_boxes(rng, scoremap)
        fast, slow = fast_ious(scoremap, gt, thresholds), reference_ious(scoremap, gt, thresholds)
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_fast_ious_equal_reference_on_224_maps():
    rng = np.random.default_rng(42)
    thresholds = score_thresholds(0.01)
    for kind in ("smooth", "holed", "noisy"):
        scoremap = make_map(rng, kind, 224)
        gt = make_boxes(rng, scoremap)
        fast, slow = fast_ious(scoremap, gt, thresholds), reference_ious(scoremap, gt, thresholds)
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def random_set(seed: int, num: int, size: int = 32):
    rng = np.random.default_rng(seed)
    maps = np.stack([make_map(rng, KINDS[i % len(KINDS)], size) for i in range(num)])
    boxes = [make_boxes(rng, m) for m in maps]
    top1 = rng.random(num) < 0.6
    top5 = top1 | (rng.random(num) < 0.5)
    return maps, boxes, top1, top5


def assert_same_box_metrics(got: dict, expected: dict):
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if key == "curves":
            assert got[key].keys() == value.keys()
            for name, curve in value.items():
                assert np.array_equal(got[key][name], curve), name
        else:
            assert got[key] == value, key


def test_box_evaluator_equals_reference_metrics():
    maps, boxes, top1, top5 = random_set(seed=3, num=21)
    evaluator = BoxEvaluator(cam_curve_interval=0.01)
    evaluator.add(maps[:0], [])
    evaluator.add(maps[:8], boxes[:8], top1[:8], top5[:8])
    evaluator.add(maps[8:], boxes[8:], top1[8:], top5[8:])
    expected = reference.box_accuracy(maps, boxes, top1, top5, cam_curve_interval=0.01)
    assert_same_box_metrics(evaluator.compute(), expected)
    assert expected["MaxBoxAcc"] > 0 and expected["top1_loc"] <= expected["MaxBoxAcc"]
    assert expected["top1_loc"] <= expected["top5_loc"]


def opencv_contours(gray: np.ndarray, level: int) -> list[tuple[tuple[int, ...], int]]:
    """(reference box, twice the polygon area) of each RETR_TREE contour of ``gray > level``, in OpenCV's order."""
    height, width = gray.shape
    contours = cv2.findContours((gray > level).astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    found = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        box = (x, y, min(x + w, width - 1), min(y + h, height - 1))
        found.append((box, int(round(2 * cv2.contourArea(contour)))))
    return found


def level_maps(rng: np.random.Generator):
    """Small uint8 maps: random levels, binary masks, few levels (plateaus, ties) and noisy blobs."""
    for i in range(48):
        height, width = (int(v) for v in rng.integers(3, 36, 2))
        if i % 4 == 0:
            gray = rng.integers(0, 256, (height, width))
        elif i % 4 == 1:
            gray = (rng.random((height, width)) < rng.uniform(0.2, 0.8)) * int(rng.integers(1, 256))
        elif i % 4 == 2:
            gray = rng.integers(0, 4, (height, width))
        else:
            gray = 255 * normalize_scoremap(make_map(rng, "noisy", max(height, width))[:height, :width])
        yield np.ascontiguousarray(gray, dtype=np.uint8)


def test_level_components_are_opencvs_contours_at_every_level():
    """Boxes of all contours, the largest polygon area and its box (unless tied) equal OpenCV's, per level."""
    rng = np.random.default_rng(7)
    levels = np.arange(255, -1, -1, dtype=np.int64)
    ties = holes_seen = 0
    for gray in level_maps(rng):
        found = level_boxes(gray, levels)
        outer, n_outer, holes, n_holes = (found[k] for k in ("outer", "outer_counts", "holes", "hole_counts"))
        largest, twice_area, tied = found["largest"], found["twice_area"], found["tied"]
        outer_at, holes_at = np.cumsum(n_outer) - n_outer, np.cumsum(n_holes) - n_holes
        for i, level in enumerate(levels.tolist()):
            expected = opencv_contours(gray, level)
            ours = [*outer[outer_at[i] : outer_at[i] + n_outer[i]], *holes[holes_at[i] : holes_at[i] + n_holes[i]]]
            assert sorted(map(tuple, ours)) == sorted(box for box, _ in expected), (gray, level)
            holes_seen += int(n_holes[i])
            if not expected:
                assert twice_area[i] == -1
                continue
            areas = [area for _, area in expected]
            assert twice_area[i] == max(areas)
            ties += int(tied[i])
            if not tied[i]:
                assert tuple(largest[i]) == expected[areas.index(max(areas))][0]
    assert ties > 50 and holes_seen > 1000


def test_level_components_reject_what_they_cannot_sweep():
    gray = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        level_boxes(gray.astype(np.float32), np.array([0]))
    with pytest.raises(ValueError, match="decrease"):
        level_boxes(gray, np.array([0, 1]))


def test_filled_levels_fill_holes_and_keep_what_reaches_the_edge():
    gray = np.array(
        [[0, 0, 0, 0, 0, 0],
         [0, 9, 9, 9, 9, 0],
         [0, 9, 1, 3, 5, 0],
         [0, 9, 9, 9, 9, 0],
         [0, 0, 0, 0, 0, 0]], dtype=np.uint8)
    expected = gray.copy()
    expected[2, 2:4] = 5  # the pool drains over the 5 to the background, which reaches the edge
    assert np.array_equal(filled_levels(gray), expected)
    diagonal = np.array(
        [[0, 0, 0, 0, 0],
         [0, 7, 7, 0, 0],
         [0, 7, 1, 7, 0],
         [0, 0, 7, 7, 0],
         [0, 0, 0, 0, 0]], dtype=np.uint8)
    expected = diagonal.copy()
    expected[2, 2] = 7  # background is 4-connected: the diagonal gaps do not drain it
    assert np.array_equal(filled_levels(diagonal), expected)


def test_tied_largest_contours_follow_opencvs_order():
    """Where the largest contours tie with different boxes, V1 keeps the one OpenCV lists first."""
    levels = np.zeros((40, 40))
    levels[38, 5] = 2  # an isolated pixel and a one-pixel-thick line, both of polygon area 0
    levels[33, 2:39] = 2
    gt = np.array([[2, 33, 39, 35]])  # IoU 2/3 with the line's box, 0 with the pixel's
    scoremap = from_levels(levels)
    assert level_boxes(gray_levels(scoremap), np.array([1]))["tied"].tolist() == [True]
    thresholds = np.array([0.34])  # cutoff 1
    ref_largest, ref_best = reference_ious(scoremap, gt, thresholds)
    largest, best = fast_ious(scoremap, gt, thresholds)
    assert largest[0] == ref_largest[0] == 0.0  # the reference keeps the pixel, which OpenCV lists first
    assert best[0] == ref_best[0] == 2 / 3


def test_evaluators_create_no_process_or_thread(monkeypatch):
    """add/add_hits/add_histograms/compute run in the caller: nothing is started, whatever the batch."""
    import multiprocessing.context
    import subprocess

    def forbidden(*args, **kwargs):
        raise AssertionError("an evaluator started a process or a thread")

    monkeypatch.setattr(multiprocessing.context.BaseContext, "Pool", forbidden)
    for start_method in ("fork", "spawn", "forkserver"):
        monkeypatch.setattr(multiprocessing.get_context(start_method).Process, "start", forbidden)
    monkeypatch.setattr(subprocess.Popen, "__init__", forbidden)
    monkeypatch.setattr(threading.Thread, "start", forbidden)
    threads = threading.active_count()
    maps, boxes, top1, top5 = random_set(seed=13, num=9)
    boxes_eval = BoxEvaluator(cam_curve_interval=0.01)
    boxes_eval.add(maps, boxes, top1, top5)
    boxes_eval.add_hits(box_hits(maps, boxes, boxes_eval.thresholds, boxes_eval.iou_thresholds), top1, top5)
    masks = MaskEvaluator()
    masks.add(maps, maps > 0.5, maps < 0.1)
    masks.add_histograms(pixel_histograms(maps, maps > 0.5, maps < 0.1, masks.edges))
    boxes_eval.compute(), masks.compute()
    assert multiprocessing.active_children() == [] and threading.active_count() == threads


def test_precomputed_hits_and_histograms_add_like_add():
    maps, boxes, top1, top5 = random_set(seed=19, num=8)
    direct, precomputed = BoxEvaluator(cam_curve_interval=0.01), BoxEvaluator(cam_curve_interval=0.01)
    direct.add(maps, boxes, top1, top5)
    for part in (slice(0, 3), slice(3, 8)):  # per-image results computed elsewhere, added in any grouping
        hits = box_hits(maps[part], boxes[part], precomputed.thresholds, precomputed.iou_thresholds)
        precomputed.add_hits(hits, top1[part], top5[part])
    assert_same_box_metrics(precomputed.compute(), direct.compute())
    with pytest.raises(ValueError, match="hits"):
        precomputed.add_hits(np.zeros((2, 3, 7), bool))
    gts, ignores = maps > 0.4, maps < 0.05
    whole, parts = MaskEvaluator(cam_curve_interval=0.01), MaskEvaluator(cam_curve_interval=0.01)
    whole.add(maps, gts, ignores)
    for i in range(len(maps)):
        parts.add_histograms(pixel_histograms(maps[i : i + 1], gts[i : i + 1], ignores[i : i + 1], parts.edges))
    assert all(np.array_equal(whole.state()[k], v) for k, v in parts.state().items())
    with pytest.raises(ValueError, match="histograms"):
        parts.add_histograms(np.zeros((1, 2, 5), np.int64))


def test_v2_is_the_mean_of_maxima_each_at_its_own_threshold():
    maps, boxes, _, _ = random_set(seed=5, num=28)
    thresholds = score_thresholds(0.01)
    v2 = np.stack([reference_ious(m, b, thresholds)[1] for m, b in zip(maps, boxes)])
    curves = [(v2 >= t / 100).mean(axis=0) * 100 for t in (30, 50, 70)]
    assert len({int(np.argmax(c)) for c in curves}) > 1, "data must put the best thresholds apart"
    evaluator = BoxEvaluator(cam_curve_interval=0.01)
    evaluator.add(maps, boxes)
    result = evaluator.compute()
    assert result["MaxBoxAccV2"] == pytest.approx(np.mean([c.max() for c in curves]), abs=1e-12)
    assert result["MaxBoxAccV2"] > np.mean(curves, axis=0).max()
    assert "top1_loc" not in result


def test_top_k_localization_uses_the_v1_best_threshold():
    maps, boxes, _, _ = random_set(seed=8, num=14)
    everything = np.ones(14, bool)
    evaluator = BoxEvaluator(cam_curve_interval=0.01)
    evaluator.add(maps, boxes, everything, everything)
    result = evaluator.compute()
    assert result["top1_loc"] == result["top5_loc"] == result["MaxBoxAcc"]
    nothing = BoxEvaluator(cam_curve_interval=0.01)
    nothing.add(maps, boxes, ~everything, ~everything)
    assert nothing.compute()["top1_loc"] == 0.0


def test_top_k_localization_under_both_rules():
    """Hand-built: the MaxBoxAcc-best threshold is not where the correctly classified images hit."""
    levels = np.zeros((3, 20, 20))
    levels[:, 2:18, 2:18] = 100  # a wide plateau (the GT of images 0, 1) ...
    levels[:, 8:12, 8:12] = 250  # ... with a small peak (the GT of image 2)
    maps = from_levels(levels)
    boxes = [np.array([[2, 2, 18, 18]]), np.array([[2, 2, 18, 18]]), np.array([[8, 8, 12, 12]])]
    top1 = np.array([False, False, True])  # only the image whose GT is the peak is classified right
    top5 = np.array([False, True, True])
    evaluator = BoxEvaluator(cam_curve_interval=0.2)  # thresholds 0, .2 give the plateau's box, .4 to .8 the peak's
    evaluator.add(maps, boxes, top1, top5)
    result = evaluator.compute()
    assert result["best_threshold"] == 0.0 and result["MaxBoxAcc"] == pytest.approx(200 / 3)
    # At the MaxBoxAcc threshold the right-class image misses; from 0.4 on it hits.
    assert result["top1_loc"] == 0.0 and result["top1_loc_maxcurve"] == pytest.approx(100 / 3)
    assert result["top5_loc"] == pytest.approx(100 / 3) == result["top5_loc_maxcurve"]
    assert_same_box_metrics(result, reference.box_accuracy(maps, boxes, top1, top5, cam_curve_interval=0.2))


def test_top_k_maxcurve_is_never_below_the_selected_threshold_rule():
    for seed in range(4):
        maps, boxes, top1, top5 = random_set(seed=30 + seed, num=12)
        evaluator = BoxEvaluator(cam_curve_interval=0.01)
        evaluator.add(maps, boxes, top1, top5)
        result = evaluator.compute()
        assert result["top1_loc"] <= result["top1_loc_maxcurve"] <= result["top5_loc_maxcurve"]
        assert result["top5_loc"] <= result["top5_loc_maxcurve"]


def test_box_state_of_two_halves_adds_up():
    maps, boxes, top1, top5 = random_set(seed=11, num=10)
    whole, first, second = (BoxEvaluator(cam_curve_interval=0.01) for _ in range(3))
    whole.add(maps, boxes, top1, top5)
    first.add(maps[:4], boxes[:4], top1[:4], top5[:4])
    second.add(maps[4:], boxes[4:], top1[4:], top5[4:])
    merged = BoxEvaluator(cam_curve_interval=0.01)
    merged.load_state({k: first.state()[k] + second.state()[k] for k in first.state()})
    assert_same_box_metrics(merged.compute(), whole.compute())
    with pytest.raises(ValueError):
        merged.load_state({"num_images": np.array(1)})


def test_box_evaluator_rejects_bad_boxes():
    evaluator = BoxEvaluator()
    with pytest.raises(FcamError):
        evaluator.add(np.zeros((1, 8, 8)), [np.zeros((0, 4))])
    with pytest.raises(FcamError):
        evaluator.add(np.zeros((1, 8, 8)), [np.array([[5, 0, 2, 3]])])
    with pytest.raises(FcamError):
        evaluator.compute()
    with pytest.raises(FcamError, match=r"\[0, 1\]"):
        evaluator.add(np.full((1, 8, 8), 1.2), [np.array([[0, 0, 3, 3]])])
    with pytest.raises(FcamError, match=r"\[0, 1\]"):
        MaskEvaluator().add(np.full((1, 2, 2), np.nan), np.ones((1, 2, 2), bool), np.zeros((1, 2, 2), bool))


# --- PxAP ----------------------------------------------------------------------------------------


def pixels(fg_scores, bg_scores, ignored_scores=()):
    scores = np.array([*fg_scores, *bg_scores, *ignored_scores], dtype=np.float64)
    gt = np.arange(len(scores)) < len(fg_scores)
    ignore = np.arange(len(scores)) >= len(fg_scores) + len(bg_scores)
    return scores[None, None], gt[None, None], ignore[None, None]


def test_pxap_is_a_right_riemann_sum():
    # Points (recall, precision) from the top: (.5, 1), (.5, .5), (1, 2/3), (1, .5).
    # Right sum: .5 * 1 + .5 * 2/3; a trapezoid would give .5 * .75 + .5 * (1/2 + 2/3) / 2 ...
    evaluator = MaskEvaluator()
    evaluator.add(*pixels([0.9, 0.3], [0.6, 0.1]))
    result = evaluator.compute()
    assert result["PxAP"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3), abs=1e-9)
    assert result["PxAP"] == reference.pixel_ap(*pixels([0.9, 0.3], [0.6, 0.1]))


def test_pxap_drops_ignored_background_but_keeps_foreground():
    plain = MaskEvaluator()
    plain.add(*pixels([0.9, 0.3], [0.6, 0.1]))
    ignoring = MaskEvaluator()
    scores, gt, ignore = pixels([0.9, 0.3], [0.6, 0.1], ignored_scores=[0.95, 0.99])
    ignoring.add(scores, gt, ignore)
    assert ignoring.compute()["PxAP"] == plain.compute()["PxAP"]
    ignore_fg_too = ignore.copy()
    ignore_fg_too[..., 0] = True  # a foreground pixel flagged ignored still counts as foreground
    again = MaskEvaluator()
    again.add(scores, gt, ignore_fg_too)
    assert again.compute()["PxAP"] == plain.compute()["PxAP"]


def test_pxap_equals_reference_and_merges():
    rng = np.random.default_rng(9)
    maps = np.stack([make_map(rng, KINDS[i % len(KINDS)], 32) for i in range(12)])
    gts = np.stack([make_map(rng, "smooth", 32) > 0.6 for _ in range(12)])
    ignores = np.stack([make_map(rng, "smooth", 32) > 0.7 for _ in range(12)]) & ~gts
    first, second = MaskEvaluator(), MaskEvaluator()
    first.add(maps[:5], gts[:5], ignores[:5])
    second.add(maps[5:], gts[5:], ignores[5:])
    merged = MaskEvaluator()
    merged.load_state({k: first.state()[k] + second.state()[k] for k in first.state()})
    result = merged.compute()
    assert result["PxAP"] == reference.pixel_ap(maps, gts, ignores)
    assert result["num_images"] == 12 and len(result["curves"]["precision"]) == len(result["curves"]["thresholds"])


@pytest.mark.parametrize("interval", [0.001, 0.01, 0.003, 0.05, 0.3, 0.7])
def test_pixel_histograms_equal_numpy_histograms(interval):
    rng = np.random.default_rng(int(interval * 1000))
    edges = np.append(np.arange(0, 1, interval), [1.0, 2.0, 3.0])
    thresholds = edges[:-3]
    # Scores on and next to every edge, 0 and 1, and random ones.
    on_edges = np.concatenate([thresholds, np.nextafter(thresholds, 0)[1:], np.nextafter(thresholds, 1), [0, 1]])
    scores = np.concatenate([on_edges, rng.random(4096 - len(on_edges) % 4096)])
    scores = scores[: len(scores) // 64 * 64].reshape(-1, 8, 8)
    gts, ignores = rng.random(scores.shape) < 0.3, rng.random(scores.shape) < 0.2
    got = pixel_histograms(scores, gts, ignores, edges)
    for score, gt, ignore, hist in zip(scores, gts, ignores, got):
        assert np.array_equal(hist[0], np.histogram(score[gt], bins=edges)[0])
        assert np.array_equal(hist[1], np.histogram(score[~gt & ~ignore], bins=edges)[0])
    evaluator = MaskEvaluator(cam_curve_interval=interval)
    evaluator.add(scores, gts, ignores)
    assert evaluator.compute()["PxAP"] == reference.pixel_ap(scores, gts, ignores, cam_curve_interval=interval)


def test_pixel_histograms_with_uneven_edges_equal_numpy_histograms():
    """Edges that are not a regular grid below 1 are binned by searching them, not by truncation."""
    rng = np.random.default_rng(7)
    edges = np.append(np.concatenate([[0.0], np.sort(rng.random(40))]), [1.0, 2.0, 3.0])
    scores = np.concatenate([edges[:-2], rng.random(64 * 30 - len(edges) + 2)]).reshape(-1, 8, 8)
    gts, ignores = rng.random(scores.shape) < 0.3, rng.random(scores.shape) < 0.2
    for score, gt, ignore, hist in zip(scores, gts, ignores, pixel_histograms(scores, gts, ignores, edges)):
        assert np.array_equal(hist[0], np.histogram(score[gt], bins=edges)[0])
        assert np.array_equal(hist[1], np.histogram(score[~gt & ~ignore], bins=edges)[0])


def test_pxap_without_foreground_is_an_error():
    evaluator = MaskEvaluator()
    evaluator.add(*pixels([], [0.6, 0.1]))
    with pytest.raises(FcamError, match="foreground"):
        evaluator.compute()


# --- score maps ----------------------------------------------------------------------------------


def test_normalize_scoremap():
    cam = np.array([[2.0, 4.0], [3.0, 10.0]], dtype=np.float32)
    out = normalize_scoremap(cam)
    assert out.dtype == np.float64 and out.min() == 0.0 and out.max() == 1.0
    assert np.array_equal(out, (cam.astype(np.float64) - 2) / 8)
    assert cam[0, 0] == 2.0  # input untouched
    with_nan = np.array([[np.nan, 1.0], [0.0, 2.0]])
    assert np.array_equal(normalize_scoremap(with_nan), np.zeros((2, 2)))
    assert np.array_equal(normalize_scoremap(np.full((3, 3), 7.0)), np.zeros((3, 3)))


def test_resize_scoremap():
    rng = np.random.default_rng(0)
    cams = rng.random((3, 7, 7))
    bicubic = resize_scoremap(cams, 28)
    assert bicubic.shape == (3, 28, 28) and bicubic.dtype == np.float64
    assert np.array_equal(bicubic[1], cv2.resize(cams[1], (28, 28), interpolation=cv2.INTER_CUBIC))
    assert np.array_equal(resize_scoremap(cams[1], 28), bicubic[1])
    bilinear = resize_scoremap(cams, (14, 21), interpolation="bilinear")
    expected = torch.nn.functional.interpolate(torch.from_numpy(cams)[:, None], (14, 21), mode="bilinear")
    assert np.array_equal(bilinear, expected[:, 0].numpy())
    with pytest.raises(ValueError, match="interpolation"):
        resize_scoremap(cams, 28, interpolation="nearest")


def test_topk_correct():
    logits = torch.tensor([[0.1, 0.9, 0.0, 0.3], [0.8, 0.1, 0.2, 0.0], [0.0, 0.1, 0.2, 0.3]])
    correct = topk_correct(logits, torch.tensor([1, 2, 0]), ks=(1, 2))
    assert correct[1].tolist() == [True, False, False]
    assert correct[2].tolist() == [True, True, False]
    assert topk_correct(logits.numpy(), [3, 3, 3], ks=(1, 5))[5].tolist() == [True, True, True]


def test_batched_normalization_equals_map_by_map():
    rng = np.random.default_rng(42)
    maps = rng.random((6, 9, 11)) * rng.uniform(0.1, 50, (6, 1, 1)) - 3.0
    maps[2] = 7.0  # constant
    maps[4, 3, 3] = np.nan
    batch = normalize_scoremap(maps)
    for got, one in zip(batch, maps):
        expected = normalize_scoremap(one)
        assert np.array_equal(got, expected)
    assert not batch[2].any() and not batch[4].any() and batch[0].max() == 1.0
