"""Figures and curve files for evaluation reports: plain functions over numpy arrays.

Drawing uses explicit Agg canvases, never pyplot, so importing this package leaves
matplotlib's global backend and state as they were.
"""

from fcam.viz.curves import (
    plot_box_curves,
    plot_histograms,
    plot_pr_curve,
    plot_threshold_sensitivity,
    write_curves_csv,
)
from fcam.viz.localization import (
    draw_boxes,
    mask_error_map,
    overlay_heatmap,
    plot_box_examples,
    plot_mask_examples,
)

__all__ = [
    "draw_boxes",
    "mask_error_map",
    "overlay_heatmap",
    "plot_box_curves",
    "plot_box_examples",
    "plot_histograms",
    "plot_mask_examples",
    "plot_pr_curve",
    "plot_threshold_sensitivity",
    "write_curves_csv",
]
