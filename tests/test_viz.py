"""Tests of fcam.viz: pixel helpers exactly, figures as valid PNGs, CSV round trip."""

import csv
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from fcam.viz import (
    draw_boxes,
    mask_error_map,
    overlay_heatmap,
    plot_box_curves,
    plot_box_examples,
    plot_histograms,
    plot_mask_examples,
    plot_pr_curve,
    plot_threshold_sensitivity,
    write_curves_csv,
)
from fcam.viz.localization import (
    FALSE_NEGATIVE_COLOR,
    FALSE_POSITIVE_COLOR,
    GT_BOX_COLOR,
    IGNORED_COLOR,
    TRUE_NEGATIVE_COLOR,
    TRUE_POSITIVE_COLOR,
)

RED = (255, 0, 0)


def _painted(image: np.ndarray, color) -> set[tuple[int, int]]:
    """The (row, col) pixels of ``image`` that equal ``color``."""
    return {tuple(p) for p in np.argwhere(np.all(image == np.asarray(color), axis=-1))}


def _assert_png(path, expected_path) -> None:
    assert path == expected_path and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode in ("RGB", "RGBA")
        assert image.width > 100 and image.height > 100
        image.load()


def _examples(n=2, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    scoremaps = [rng.random((size, size)) for _ in range(n)]
    return images, scoremaps


def test_draw_boxes_outlines_inclusive_corners():
    image = np.zeros((10, 12, 3), dtype=np.uint8)
    out = draw_boxes(image, np.array([[2, 3, 7, 8]]), RED, thickness=1)
    expected = {(3, c) for c in range(2, 8)} | {(8, c) for c in range(2, 8)}
    expected |= {(r, 2) for r in range(3, 9)} | {(r, 7) for r in range(3, 9)}
    assert _painted(out, RED) == expected
    assert len(_painted(out, (0, 0, 0))) == 10 * 12 - 20
    assert not image.any(), "the input image must not be modified"


def test_draw_boxes_thickness_grows_inwards():
    out = draw_boxes(np.zeros((8, 8, 3), dtype=np.uint8), np.array([[1, 1, 6, 6]]), RED, thickness=2)
    painted = _painted(out, RED)
    assert {(1, 1), (2, 2), (6, 6), (5, 5), (1, 6), (5, 2)} <= painted
    assert (0, 0) not in painted and (3, 3) not in painted and (7, 7) not in painted
    assert len(painted) == 36 - 4


def test_draw_boxes_clips_edges_outside_the_image():
    out = draw_boxes(np.zeros((6, 6, 3), dtype=np.uint8), np.array([[-3, -3, 4, 4]]), RED, thickness=1)
    # The top and left edges lie outside; only the bottom row 4 and right column 4 show.
    assert _painted(out, RED) == {(4, c) for c in range(5)} | {(r, 4) for r in range(5)}


def test_draw_boxes_draws_several_boxes_and_empty_lists():
    image = np.zeros((6, 6, 3), dtype=np.uint8)
    out = draw_boxes(image, np.array([[0, 0, 0, 0], [5, 5, 5, 5]]), GT_BOX_COLOR)
    assert _painted(out, GT_BOX_COLOR) == {(0, 0), (5, 5)}
    assert np.array_equal(draw_boxes(image, np.zeros((0, 4)), RED), image)


def test_draw_boxes_rejects_bad_input():
    image = np.zeros((6, 6, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="x1 < x0"):
        draw_boxes(image, np.array([[4, 0, 2, 3]]), RED)
    with pytest.raises(ValueError, match="x0, y0, x1, y1"):
        draw_boxes(image, np.array([[1, 2, 3]]), RED)
    with pytest.raises(ValueError, match="uint8"):
        draw_boxes(image.astype(np.float32), np.array([[1, 1, 2, 2]]), RED)


def test_mask_error_map_colours_each_outcome():
    pred = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=bool)
    gt = np.array([[1, 0, 1, 0], [1, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]], dtype=bool)
    ignore = np.array([[0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1]], dtype=bool)
    # t: true positive, p: false positive, n: false negative, .: true negative, i: ignored.
    # (1, 0) is ignored but in the GT, so it is scored: the PxAP protocol drops only ignore & ~gt.
    expected_codes = ["tpni", "tpn.", "..tn", ".i.i"]
    colors = {
        "t": TRUE_POSITIVE_COLOR,
        "p": FALSE_POSITIVE_COLOR,
        "n": FALSE_NEGATIVE_COLOR,
        ".": TRUE_NEGATIVE_COLOR,
        "i": IGNORED_COLOR,
    }
    expected = np.array([[colors[c] for c in row] for row in expected_codes], dtype=np.uint8)
    out = mask_error_map(pred, gt, ignore)
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    np.testing.assert_array_equal(out, expected)
    assert len({*colors.values()}) == 5, "the five outcomes need distinct colours"
    without_ignore = mask_error_map(pred, gt)
    np.testing.assert_array_equal(without_ignore[0, 3], TRUE_NEGATIVE_COLOR)
    np.testing.assert_array_equal(without_ignore[3, 1], FALSE_POSITIVE_COLOR)


def test_mask_error_map_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        mask_error_map(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="ignore"):
        mask_error_map(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((3, 4)))


def test_overlay_heatmap_maps_low_scores_blue_and_high_scores_red():
    image = np.full((1, 2, 3), 128, dtype=np.uint8)
    out = overlay_heatmap(image, np.array([[0.0, 1.0]]), alpha=1.0)
    low, high = out[0, 0].astype(int), out[0, 1].astype(int)
    assert low[2] > low[0] and low[2] > low[1]
    assert high[0] > high[1] and high[0] > high[2]
    half = overlay_heatmap(image, np.array([[0.0, 1.0]]), alpha=0.5).astype(int)
    np.testing.assert_allclose(half[0], (out[0].astype(int) + 128) / 2, atol=1)


def test_plot_box_examples_writes_png(tmp_path):
    images, scoremaps = _examples()
    boxes = [np.array([[2, 2, 10, 12]]), np.zeros((0, 4))]
    gts = [np.array([[1, 1, 9, 9], [3, 4, 14, 15]]), np.array([[0, 0, 15, 15]])]
    target = tmp_path / "nested" / "boxes.png"
    path = plot_box_examples(images, scoremaps, [0.3, 0.6], boxes, gts, target, titles=["a.jpg", "b.jpg"])
    _assert_png(path, target)


def test_plot_mask_examples_writes_png(tmp_path):
    images, scoremaps = _examples(n=3)
    gts = [s > 0.5 for s in scoremaps]
    ignores = [np.eye(16, dtype=bool)] * 3
    _assert_png(plot_mask_examples(images, scoremaps, 0.5, gts, ignores, tmp_path / "m.png"), tmp_path / "m.png")
    _assert_png(plot_mask_examples(images, scoremaps, 0.5, gts, None, tmp_path / "n.png"), tmp_path / "n.png")


def test_example_grids_reject_mismatched_inputs(tmp_path):
    images, scoremaps = _examples()
    boxes = [np.zeros((0, 4))] * 2
    with pytest.raises(ValueError, match="differ in length"):
        plot_box_examples(images, scoremaps[:1], 0.5, boxes, boxes, tmp_path / "x.png")
    with pytest.raises(ValueError, match="thresholds"):
        plot_box_examples(images, scoremaps, [0.1, 0.2, 0.3], boxes, boxes, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"scoremaps\[1\] has shape"):
        plot_box_examples(images, [scoremaps[0], scoremaps[1][:8]], 0.5, boxes, boxes, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot_box_examples(images, [scoremaps[0], scoremaps[1] * np.nan], 0.5, boxes, boxes, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"gt_masks\[0\]"):
        plot_mask_examples(images, scoremaps, 0.5, [np.zeros((4, 4), bool)] * 2, None, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _box_curves(peak: float) -> dict:
    thresholds = np.arange(0, 1, 0.05)
    bump = np.exp(-(((thresholds - peak) / 0.3) ** 2))
    return {
        "thresholds": thresholds,
        "v1_iou50": 70 * bump,
        "v2_iou30": 85 * bump,
        "v2_iou50": 72 * bump,
        "v2_iou70": 30 * bump,
        "MaxBoxAcc": 70.0,
    }


def test_curve_figures_write_png(tmp_path):
    _assert_png(plot_box_curves(_box_curves(0.2), tmp_path / "a" / "box.png", title="t"), tmp_path / "a" / "box.png")
    thresholds = np.arange(0, 1, 0.01)
    pr = {"thresholds": thresholds, "precision": 0.3 + 0.6 * thresholds, "recall": 1 - thresholds, "PxAP": 58.3}
    _assert_png(plot_pr_curve(pr, tmp_path / "pr.png"), tmp_path / "pr.png")
    # As PxAP writes them: thresholds above every score give precision 0/0 = NaN.
    pr["precision"][:3] = np.nan
    _assert_png(plot_pr_curve(pr, tmp_path / "pr_nan.png"), tmp_path / "pr_nan.png")
    by_method = {"CAM": _box_curves(0.2), "CAM + F-CAM": _box_curves(0.5)}
    for key in ("v1_iou50", "v2_iou70"):
        _assert_png(plot_threshold_sensitivity(by_method, tmp_path / f"{key}.png", key=key), tmp_path / f"{key}.png")


def test_plot_histograms_writes_png_linear_and_log(tmp_path):
    rng = np.random.default_rng(1)
    scores = {"CAM": rng.random((3, 8, 8)), "CAM + F-CAM": rng.beta(0.3, 0.3, 500)}
    _assert_png(plot_histograms(scores, tmp_path / "h.png", bins=20), tmp_path / "h.png")
    _assert_png(plot_histograms(scores, tmp_path / "l.png", log_counts=True), tmp_path / "l.png")
    with pytest.raises(ValueError, match="CAM"):
        plot_histograms({"CAM": np.array([0.5, 1.5])}, tmp_path / "bad.png")


def test_curve_figures_reject_bad_curves(tmp_path):
    short = _box_curves(0.2)
    short["v2_iou50"] = short["v2_iou50"][:-1]
    with pytest.raises(ValueError, match="v2_iou50"):
        plot_box_curves(short, tmp_path / "x.png")
    with pytest.raises(ValueError, match="v1_iou50"):
        plot_box_curves({"thresholds": np.arange(3)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="recall"):
        plot_pr_curve({"precision": np.ones(3), "recall": np.ones(2)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="NaN everywhere"):
        plot_pr_curve({"precision": np.full(3, np.nan), "recall": np.ones(3)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="fractions"):
        plot_pr_curve({"precision": np.full(3, 50.0), "recall": np.ones(3)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="F-CAM.*v2_iou30"):
        plot_threshold_sensitivity({"F-CAM": {"thresholds": np.arange(3)}}, tmp_path / "x.png", key="v2_iou30")


def test_write_curves_csv_round_trip(tmp_path):
    curves = _box_curves(0.3)
    curves = {"v2_iou30": curves["v2_iou30"], "PxAP": 60.1, **curves}
    curves["count"] = np.arange(len(curves["thresholds"]))
    path = write_curves_csv(curves, tmp_path / "sub" / "curves.csv")
    with path.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["thresholds", "v2_iou30", "v1_iou50", "v2_iou50", "v2_iou70", "count"]
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    assert table.shape == (20, 6)
    for column, key in enumerate(header):
        np.testing.assert_array_equal(table[:, column], curves[key])


def test_write_curves_csv_rejects_ragged_and_2d_columns(tmp_path):
    with pytest.raises(ValueError, match="differ in length"):
        write_curves_csv({"thresholds": np.arange(3), "v1_iou50": np.arange(4)}, tmp_path / "x.csv")
    with pytest.raises(ValueError, match="1-D"):
        write_curves_csv({"thresholds": np.zeros((2, 2))}, tmp_path / "x.csv")


def test_import_and_drawing_leave_the_matplotlib_backend_alone(tmp_path):
    # A fresh interpreter with a non-Agg backend selected: switching to Agg would show.
    script = textwrap.dedent(
        f"""
        import sys
        import matplotlib
        before = matplotlib.get_backend()
        import numpy as np
        import fcam.viz
        fcam.viz.plot_histograms({{"m": np.linspace(0, 1, 10)}}, {str(tmp_path / "h.png")!r})
        assert matplotlib.get_backend() == before, (before, matplotlib.get_backend())
        assert "matplotlib.pyplot" not in sys.modules
        print(before)
        """
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "svg"
    assert (tmp_path / "h.png").stat().st_size > 0
