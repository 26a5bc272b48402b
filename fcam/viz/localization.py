"""Per-image localization figures: heat maps, thresholded masks, boxes and mask errors.

The layouts follow the F-CAM paper: Fig. 3 (image, heat map, mask, predicted and GT boxes)
for box datasets and Fig. 4 (image, heat map, pixel errors against the GT mask) for mask
datasets. The pixel-level helpers are pure numpy so that they can be tested exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import ArrayLike

from fcam.viz.figure import PathArg, new_figure, save_png

Color = tuple[int, int, int]

PRED_BOX_COLOR: Color = (255, 0, 0)
GT_BOX_COLOR: Color = (0, 255, 0)

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
TRUE_POSITIVE_COLOR: Color = (0, 158, 115)
FALSE_POSITIVE_COLOR: Color = (230, 159, 0)
FALSE_NEGATIVE_COLOR: Color = (86, 180, 233)
TRUE_NEGATIVE_COLOR: Color = (0, 0, 0)
IGNORED_COLOR: Color = (128, 128, 128)

MAX_ROWS = 16
CELL_INCHES = 2.2


def draw_boxes(image: np.ndarray, boxes: np.ndarray, color: Color, thickness: int = 2) -> np.ndarray:
    """Return a copy of an (H, W, 3) uint8 image with the outlines of ``boxes`` in ``color``.

    Boxes are rows ``(x0, y0, x1, y1)`` of inclusive pixel corners, as in wsolevaluation: the
    outline covers columns x0 and x1 and rows y0 and y1, and grows ``thickness - 1`` pixels
    inwards. Parts outside the image are clipped away.
    """
    _check_image(image, "image")
    boxes = _check_boxes(boxes, "boxes")
    if thickness < 1:
        raise ValueError(f"thickness must be >= 1, got {thickness}")
    out = image.copy()
    inner = thickness - 1
    for x0, y0, x1, y1 in boxes:
        _fill(out, y0, min(y0 + inner, y1), x0, x1, color)
        _fill(out, max(y1 - inner, y0), y1, x0, x1, color)
        _fill(out, y0, y1, x0, min(x0 + inner, x1), color)
        _fill(out, y0, y1, max(x1 - inner, x0), x1, color)
    return out


def overlay_heatmap(image: np.ndarray, scoremap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the jet-coloured ``scoremap`` (H, W) in [0, 1] over an (H, W, 3) uint8 image."""
    scoremap = _check_pair(image, scoremap, "image", "scoremap")
    colors = matplotlib.colormaps["jet"](scoremap)[..., :3]
    blended = (1.0 - alpha) * (image / 255.0) + alpha * colors
    return np.round(blended * 255.0).astype(np.uint8)


def mask_error_map(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """Colour-code a predicted mask against the GT mask as an (H, W, 3) uint8 image.

    True positives, false positives, false negatives and true negatives get the module's
    ``*_COLOR`` constants. As in the PxAP protocol, a pixel is ignored (grey) when it is in
    ``ignore`` and not in ``gt``: the GT foreground is always scored.
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(f"pred and gt must be 2-D masks of one shape, got {pred.shape} and {gt.shape}")
    out = np.empty((*pred.shape, 3), dtype=np.uint8)
    out[...] = TRUE_NEGATIVE_COLOR
    out[pred & gt] = TRUE_POSITIVE_COLOR
    out[pred & ~gt] = FALSE_POSITIVE_COLOR
    out[~pred & gt] = FALSE_NEGATIVE_COLOR
    if ignore is not None:
        ignore = np.asarray(ignore, dtype=bool)
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore mask has shape {ignore.shape}, expected {gt.shape}")
        out[ignore & ~gt] = IGNORED_COLOR
    return out


def plot_box_examples(
    images: Sequence[np.ndarray],
    scoremaps: Sequence[np.ndarray],
    thresholds: float | Sequence[float],
    pred_boxes: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    path: PathArg,
    titles: Sequence[str] | None = None,
) -> Path:
    """One row per image: image, heat map, mask ``scoremap >= t``, predicted and GT boxes.

    ``thresholds`` is one threshold for all images or one per image. Boxes are drawn as
    given (inclusive corners, in the image's pixel grid): predicted in red over GT in green.
    """
    n = _common_length(images=images, scoremaps=scoremaps, pred_boxes=pred_boxes, gt_boxes=gt_boxes, titles=titles)
    per_image = _per_image_thresholds(thresholds, n)
    figure, axes = _image_grid(n, 4)
    headers = ("image", "heat map", "mask (score \u2265 t)", "boxes: predicted red, GT green")
    for col, header in enumerate(headers):
        axes[0, col].set_title(header, fontsize=9)
    for row in range(n):
        image, scoremap, threshold = images[row], scoremaps[row], per_image[row]
        scoremap = _check_pair(image, scoremap, f"images[{row}]", f"scoremaps[{row}]")
        # About 2 px at 224: thin enough for small boxes, thick enough to survive the
        # figure's downsampling of larger images.
        thickness = max(1, round(max(image.shape[:2]) / 112))
        boxed = draw_boxes(image, gt_boxes[row], GT_BOX_COLOR, thickness)
        boxed = draw_boxes(boxed, pred_boxes[row], PRED_BOX_COLOR, thickness)
        ax_image, ax_heat, ax_mask, ax_boxes = axes[row]
        ax_image.imshow(image)
        ax_image.set_ylabel(_row_label(titles, row), fontsize=8)
        ax_heat.imshow(overlay_heatmap(image, scoremap))
        ax_mask.imshow(scoremap >= threshold, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax_mask.set_xlabel(f"t = {threshold:.3f}", fontsize=8)
        ax_boxes.imshow(boxed)
    return save_png(figure, path)


def plot_mask_examples(
    images: Sequence[np.ndarray],
    scoremaps: Sequence[np.ndarray],
    thresholds: float | Sequence[float],
    gt_masks: Sequence[np.ndarray],
    ignore_masks: Sequence[np.ndarray] | None,
    path: PathArg,
    titles: Sequence[str] | None = None,
) -> Path:
    """One row per image: image, heat map, and the errors of ``scoremap >= t`` against the GT.

    The error panel is :func:`mask_error_map`; a legend names its colours.
    """
    n = _common_length(images=images, scoremaps=scoremaps, gt_masks=gt_masks, ignore_masks=ignore_masks, titles=titles)
    per_image = _per_image_thresholds(thresholds, n)
    figure, axes = _image_grid(n, 3, legend_rows=1)
    for col, header in enumerate(("image", "heat map", "mask (score \u2265 t) vs GT")):
        axes[0, col].set_title(header, fontsize=9)
    for row in range(n):
        image, scoremap, threshold = images[row], scoremaps[row], per_image[row]
        scoremap = _check_pair(image, scoremap, f"images[{row}]", f"scoremaps[{row}]")
        gt = np.asarray(gt_masks[row])
        if gt.shape != scoremap.shape:
            raise ValueError(f"gt_masks[{row}] has shape {gt.shape}, expected the scoremap's {scoremap.shape}")
        ignore = None if ignore_masks is None else ignore_masks[row]
        ax_image, ax_heat, ax_errors = axes[row]
        ax_image.imshow(image)
        ax_image.set_ylabel(_row_label(titles, row), fontsize=8)
        ax_heat.imshow(overlay_heatmap(image, scoremap))
        ax_errors.imshow(mask_error_map(scoremap >= threshold, gt, ignore), interpolation="nearest")
        ax_errors.set_xlabel(f"t = {threshold:.3f}", fontsize=8)
    legend = [
        ("true positive", TRUE_POSITIVE_COLOR),
        ("false positive", FALSE_POSITIVE_COLOR),
        ("false negative", FALSE_NEGATIVE_COLOR),
        ("ignored", IGNORED_COLOR),
    ]
    handles = [Patch(facecolor=np.asarray(rgb) / 255.0, edgecolor="black", label=name) for name, rgb in legend]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    return save_png(figure, path)


def _image_grid(n_rows: int, n_cols: int, legend_rows: int = 0) -> tuple[Figure, np.ndarray]:
    """A figure with an ``n_rows`` x ``n_cols`` grid of bare image axes."""
    if not 1 <= n_rows <= MAX_ROWS:
        raise ValueError(f"an example grid takes 1 to {MAX_ROWS} images, got {n_rows}; split them over several files")
    height = CELL_INCHES * n_rows + 0.3 + 0.35 * legend_rows
    figure = new_figure(CELL_INCHES * n_cols, height)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat:
        _bare(ax)
    return figure, axes


def _bare(ax: Axes) -> None:
    """Hide ticks and frame but keep the axis labels, which carry row titles and thresholds."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _row_label(titles: Sequence[str] | None, row: int) -> str:
    return f"#{row}" if titles is None else titles[row]


def _common_length(**sequences: Sequence | None) -> int:
    """The common length of the given sequences (``None`` ones skipped), else ValueError."""
    lengths = {name: len(seq) for name, seq in sequences.items() if seq is not None}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise ValueError(f"per-image lists differ in length: {listed}")
    return next(iter(lengths.values()))


def _per_image_thresholds(thresholds: float | Sequence[float], n: int) -> list[float]:
    if np.ndim(thresholds) == 0:
        return [float(thresholds)] * n
    if len(thresholds) != n:
        raise ValueError(f"got {len(thresholds)} thresholds for {n} images; give one or one per image")
    return [float(t) for t in thresholds]


def _check_image(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{name} must be an (H, W, 3) uint8 array, got shape {shape} of {dtype}")


def _check_pair(image: np.ndarray, scoremap: ArrayLike, image_name: str, map_name: str) -> np.ndarray:
    """The score map as an array, checked against its image: same (H, W), values in [0, 1]."""
    _check_image(image, image_name)
    scoremap = np.asarray(scoremap)
    if scoremap.shape != image.shape[:2]:
        raise ValueError(f"{map_name} has shape {scoremap.shape}, expected the image's {image.shape[:2]}")
    if not np.all((scoremap >= 0.0) & (scoremap <= 1.0)):
        raise ValueError(f"{map_name} must hold values in [0, 1] (no NaN)")
    return scoremap


def _check_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    """Boxes as an (n, 4) int64 array of ordered corners; one (4,) box is accepted, floats are rounded."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite rows (x0, y0, x1, y1), got shape {np.shape(boxes)}")
    corners = np.rint(array).astype(np.int64)
    if np.any(corners[:, 2] < corners[:, 0]) or np.any(corners[:, 3] < corners[:, 1]):
        raise ValueError(f"{name} has a box with x1 < x0 or y1 < y0: {corners.tolist()}")
    return corners


def _fill(out: np.ndarray, y0: int, y1: int, x0: int, x1: int, color: Color) -> None:
    """Paint the inclusive pixel rectangle [y0, y1] x [x0, x1] of ``out``, clipped to it."""
    h, w = out.shape[:2]
    y0, y1, x0, x1 = max(y0, 0), min(y1, h - 1), max(x0, 0), min(x1, w - 1)
    if y0 <= y1 and x0 <= x1:
        out[y0 : y1 + 1, x0 : x1 + 1] = color
