"""Evaluation curves as figures and CSV: accuracy vs CAM threshold, precision-recall, histograms.

Curves come as dicts of 1-D arrays sharing one length, keyed as ``fcam-eval`` writes them:
``thresholds``, box accuracies ``v1_iou50`` / ``v2_iou30`` / ... (percent per threshold),
``precision`` / ``recall`` (fractions) and scalars such as ``PxAP``. The threshold
sensitivity and histogram figures follow Fig. 5 and Fig. 6 of the F-CAM paper.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from numpy.typing import ArrayLike

from fcam.viz.figure import PathArg, new_figure, save_png

# v1: the largest contour's box only (MaxBoxAcc); v2: all contours' boxes (MaxBoxAccV2).
_BOX_KEY = re.compile(r"(v1|v2)_iou(\d+)")


def plot_box_curves(curves: Mapping[str, ArrayLike], path: PathArg, title: str = "") -> Path:
    """Box accuracy (%) vs CAM threshold, one line per ``v1_iouNN`` / ``v2_iouNN`` key.

    Each line's best point is marked and its value and threshold are given in the legend.
    """
    thresholds = _series(curves, "thresholds", "curves")
    keys = sorted((key for key in curves if _BOX_KEY.fullmatch(key)), key=_box_key_order)
    if not keys:
        raise ValueError(f"curves has no accuracy series named like 'v1_iou50' or 'v2_iou30'; keys: {sorted(curves)}")
    figure = new_figure(6.4, 4.8)
    ax = figure.subplots()
    for key in keys:
        accuracy = _series(curves, key, "curves", len(thresholds))
        # V1 often coincides with V2 at IoU 50: dashed black on top keeps both visible.
        style = {"color": "black", "linestyle": "--", "zorder": 3} if key.startswith("v1") else {}
        _plot_with_best(ax, thresholds, accuracy, _box_label(key), **style)
    _accuracy_axes(ax, "localization accuracy (%)", title or "Box accuracy vs CAM threshold")
    return save_png(figure, path)


def plot_pr_curve(curves: Mapping[str, ArrayLike], path: PathArg, title: str = "") -> Path:
    """Pixel precision vs recall (fractions); the legend gives ``curves["PxAP"]`` when present.

    NaN precisions (0/0 at thresholds above every score: no pixel predicted) are left out,
    as the PxAP sum leaves them out.
    """
    precision = _series(curves, "precision", "curves")
    recall = _series(curves, "recall", "curves", len(precision))
    defined = ~np.isnan(precision)
    precision, recall = precision[defined], recall[defined]
    if precision.size == 0:
        raise ValueError("curves['precision'] is NaN everywhere: no operating point to plot")
    for name, values in (("precision", precision), ("recall", recall)):
        if not np.all((values >= 0.0) & (values <= 1.0)):
            raise ValueError(f"curves['{name}'] must hold fractions in [0, 1]")
    label = f"PxAP = {float(curves['PxAP']):.1f}" if "PxAP" in curves else "precision-recall"
    figure = new_figure(4.8, 4.4)
    ax = figure.subplots()
    (line,) = ax.plot(recall, precision, label=label)
    ax.fill_between(recall, precision, color=line.get_color(), alpha=0.15)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0.0, 1.0), ylim=(0.0, 1.02))
    ax.set_title(title or "Pixel precision-recall", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)
    return save_png(figure, path)


def plot_threshold_sensitivity(
    curves_by_method: Mapping[str, Mapping[str, ArrayLike]],
    path: PathArg,
    key: str = "v1_iou50",
    title: str = "",
) -> Path:
    """Accuracy ``curves[key]`` vs CAM threshold, one line per method (e.g. CAM vs CAM + F-CAM)."""
    if not curves_by_method:
        raise ValueError("curves_by_method is empty")
    label = _box_label(key) if _BOX_KEY.fullmatch(key) else key
    figure = new_figure(6.4, 4.8)
    ax = figure.subplots()
    for method, curves in curves_by_method.items():
        thresholds = _series(curves, "thresholds", f"curves_by_method['{method}']")
        accuracy = _series(curves, key, f"curves_by_method['{method}']", len(thresholds))
        _plot_with_best(ax, thresholds, accuracy, method)
    _accuracy_axes(ax, f"{label} (%)", title or f"Sensitivity to the CAM threshold: {label}")
    return save_png(figure, path)


def plot_histograms(
    scores_by_method: Mapping[str, ArrayLike],
    path: PathArg,
    bins: int = 50,
    log_counts: bool = False,
    title: str = "",
) -> Path:
    """Histograms of activation values in [0, 1] (maps of any shape, flattened), one panel per method.

    Heights are fractions of each method's pixels so that panels compare on one shared axis;
    ``log_counts`` puts that axis on a log scale, which shows the sparse high-score tail.
    """
    if not scores_by_method:
        raise ValueError("scores_by_method is empty")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    figure = new_figure(3.2 * len(scores_by_method) + 0.3, 3.4)
    axes = figure.subplots(1, len(scores_by_method), sharey=True, squeeze=False)[0]
    for ax, (method, scores) in zip(axes, scores_by_method.items()):
        values = np.asarray(scores).ravel()
        if values.size == 0:
            raise ValueError(f"scores_by_method['{method}'] is empty")
        if not (values.min() >= 0.0 and values.max() <= 1.0):
            raise ValueError(f"scores_by_method['{method}'] must hold values in [0, 1] (no NaN)")
        counts, _ = np.histogram(values, bins=edges)
        ax.stairs(counts / values.size, edges, fill=True, alpha=0.85)
        ax.text(0.97, 0.95, f"mean {values.mean():.3f}", transform=ax.transAxes, ha="right", va="top", fontsize=8)
        ax.set_title(method, fontsize=10)
        ax.set_xlabel("activation value")
        ax.set_xlim(0.0, 1.0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of pixels")
    if log_counts:
        axes[0].set_yscale("log")
    figure.suptitle(title or "Distribution of activation values", fontsize=11)
    return save_png(figure, path)


def write_curves_csv(curves: Mapping[str, ArrayLike], path: PathArg) -> Path:
    """Write the 1-D entries of ``curves`` as CSV columns under a header row; ``thresholds`` first.

    Scalar entries (such as ``PxAP``) are skipped. Floats are written in their shortest exact
    form, so reading the file back gives the same numbers.
    """
    columns = {}
    for key, value in curves.items():
        array = np.asarray(value)
        if array.ndim == 0:
            continue
        if array.ndim != 1:
            raise ValueError(f"curves['{key}'] must be 1-D or a scalar, got shape {array.shape}")
        columns[key] = array.astype(np.int64) if array.dtype == bool else array
    if not columns:
        raise ValueError(f"curves has no 1-D entries to write; keys: {sorted(curves)}")
    order = sorted(columns, key=lambda key: key != "thresholds")
    lengths = {key: len(columns[key]) for key in order}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"curves columns differ in length: {lengths}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(order)
        writer.writerows(zip(*(columns[key].tolist() for key in order)))
    return path


def _series(curves: Mapping[str, ArrayLike], key: str, where: str, length: int | None = None) -> np.ndarray:
    """``curves[key]`` as a non-empty 1-D float array of the given length, else ValueError."""
    if key not in curves:
        raise ValueError(f"{where} has no '{key}'; keys: {sorted(curves)}")
    values = np.asarray(curves[key], dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{where}['{key}'] must be a non-empty 1-D array, got shape {values.shape}")
    if length is not None and values.size != length:
        raise ValueError(f"{where}['{key}'] has {values.size} values, expected {length} (one per threshold)")
    return values


def _box_key_order(key: str) -> tuple[str, int]:
    version, iou = _BOX_KEY.fullmatch(key).groups()
    return version, int(iou)


def _box_label(key: str) -> str:
    version, iou = _BOX_KEY.fullmatch(key).groups()
    boxes = "largest box" if version == "v1" else "all boxes"
    return f"{version.upper()} ({boxes}), IoU \u2265 {iou}%"


def _plot_with_best(ax: Axes, x: np.ndarray, y: np.ndarray, label: str, **style) -> None:
    """Plot y(x) and mark its first maximum, whose value and position go into the label."""
    best = int(np.argmax(y))
    (line,) = ax.plot(x, y, label=f"{label}: best {y[best]:.1f} at t={x[best]:.3g}", **style)
    ax.plot(x[best], y[best], marker="o", markersize=6, color=line.get_color(), zorder=line.get_zorder())


def _accuracy_axes(ax: Axes, ylabel: str, title: str) -> None:
    """Axes in percent with a little headroom, so that 100% and its marker stay visible."""
    ax.set(xlabel="CAM threshold", ylabel=ylabel, xlim=(0.0, 1.0), ylim=(0.0, 102.0))
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
