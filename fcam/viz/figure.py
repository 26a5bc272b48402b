"""Figures drawn on an explicit Agg canvas and saved as PNG.

Building a ``Figure`` with its own ``FigureCanvasAgg`` instead of going through pyplot leaves
matplotlib's global state alone (no backend switch, no current-figure registry), so importing
or calling ``fcam.viz`` never changes how the user's own plots behave, and each figure is
freed once it goes out of scope.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100

PathArg = str | os.PathLike[str]


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of ``width`` x ``height`` inches on an Agg canvas."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: PathArg) -> Path:
    """Write ``figure`` as a PNG at ``path``, creating parent folders; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    return path
