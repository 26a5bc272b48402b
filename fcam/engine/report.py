"""What an evaluation leaves behind: ``metrics.json``, ``provenance.json``, the curves as CSV and PNG,
and a table."""

from __future__ import annotations

import json
from pathlib import Path

from fcam.engine.results import METRIC_KEYS, METRICS_FILE, PROVENANCE_FILE


def scalar_metrics(metrics: dict) -> dict:
    """The JSON-able scalars of an evaluator's result (curves and arrays left out)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def write_report(metrics: dict, out_dir: str | Path, title: str = "", provenance: dict | None = None) -> dict:
    """Write ``metrics.json``, ``curves.csv`` and ``curves.png`` into ``out_dir``, and ``provenance``
    (what was evaluated: method, dataset, split, config; see :mod:`fcam.engine.results`) as
    ``provenance.json``; return the scalars."""
    from fcam.viz import plot_box_curves, plot_pr_curve, write_curves_csv  # matplotlib: only when writing

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scalars = scalar_metrics(metrics)
    (out_dir / METRICS_FILE).write_text(json.dumps(scalars, indent=2) + "\n")
    if provenance is not None:
        (out_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    curves = metrics.get("curves")
    if curves:
        write_curves_csv(curves, out_dir / "curves.csv")
        if "precision" in curves:
            plot_pr_curve({**curves, "PxAP": scalars.get("PxAP")}, out_dir / "curves.png", title=title)
        else:
            plot_box_curves(curves, out_dir / "curves.png", title=title)
    return scalars


def format_table(rows: dict[str, dict]) -> str:
    """A fixed-width table: one row per method, the protocol's columns that any row has.

    Of the top-1/top-5 localization columns, ``*_maxcurve`` is the rule the F-CAM paper reports
    (see :data:`fcam.engine.results.EXTRA_KEYS`).
    """
    keys = [k for k in METRIC_KEYS if any(k in r for r in rows.values())]
    width = max([len("method"), *(len(name) for name in rows)])
    head = "method".ljust(width) + "".join(f"  {k:>{max(len(k), 7)}}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, row in rows.items():
        cells = "".join(f"  {row[k]:>{max(len(k), 7)}.2f}" if k in row else f"  {'-':>{max(len(k), 7)}}"
                        for k in keys)
        lines.append(name.ljust(width) + cells)
    return "\n".join(lines)
