"""Results tables: evaluation folders of several methods, runs and seeds collected into one table
(Markdown, CSV or LaTeX), with the mean ± standard deviation of runs that differ only by their seed.

``fcam-eval`` leaves ``metrics.json`` and ``provenance.json`` (method, dataset, split, resolved
config) in each method's folder. Evaluations whose method, dataset, split and config agree but for
``train.seed`` (and keys that do not change a result, :data:`NOT_IDENTITY`) are the seeds of one
row; the config keys that differ between rows become label columns. Pure Python: no torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from fcam.config import flatten
from fcam.errors import FcamError

BOX_KEYS = ("MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU50", "MaxBoxAccV2_IoU70")
MASK_KEYS = ("PxAP",)
# top1_loc/top5_loc: read at the MaxBoxAcc-selected threshold (this project's historical meaning);
# *_maxcurve: the best point of the top-1/top-5 localization curve itself, the rule of the F-CAM
# authors' code and so of the F-CAM paper's tables (Belharbi et al., WACV 2022).
EXTRA_KEYS = ("top1_loc", "top5_loc", "top1_loc_maxcurve", "top5_loc_maxcurve", "cls_acc")
METRIC_KEYS = (*BOX_KEYS, *MASK_KEYS, *EXTRA_KEYS)

METRICS_FILE, PROVENANCE_FILE = "metrics.json", "provenance.json"
SEED_KEY = "train.seed"
# Config keys (or sections) that do not change what a run computes: never a reason for another row.
NOT_IDENTITY = (SEED_KEY, "data.num_workers", "eval.num_workers", "train.eval_batch_size", "device", "log")


@dataclass
class Evaluation:
    """One ``metrics.json`` and what produced it."""

    folder: Path
    metrics: dict[str, Any]
    identity: dict[str, Any]      # method, dataset, split, source and config keys (flattened)
    seed: Any                     # train.seed of the evaluated run (None when unknown)


def _not_identity(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in NOT_IDENTITY)


def read_evaluation(folder: Path) -> Evaluation:
    """The evaluation in ``folder``: its metrics and, from ``provenance.json`` when present, its
    method, dataset, split and config (a folder without it is named after itself)."""
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text())
        provenance = json.loads((folder / PROVENANCE_FILE).read_text()) if (folder / PROVENANCE_FILE).is_file() else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise FcamError(f"{folder}: not a readable evaluation ({exc.__class__.__name__}: {exc})") from None
    config = flatten(provenance.get("config") or {})
    identity = {"method": provenance.get("method") or folder.name, "dataset": provenance.get("dataset"),
                "split": provenance.get("split"), "scoremap_root": provenance.get("scoremap_root")}
    identity.update({f"config:{k}": v for k, v in config.items() if not _not_identity(k)})
    return Evaluation(folder, metrics, identity, config.get(SEED_KEY))


def collect(folders: Iterable[str | Path]) -> list[Evaluation]:
    """Every evaluation under ``folders`` (each folder holding ``metrics.json``, at any depth)."""
    found = []
    for root in map(Path, folders):
        if not root.is_dir():
            raise FcamError(f"no such evaluation folder: {root}")
        paths = sorted(root.rglob(METRICS_FILE))
        if not paths:
            raise FcamError(f"{root}: holds no {METRICS_FILE} (a folder written by fcam-eval)")
        found += [read_evaluation(path.parent) for path in paths]
    return found


@dataclass
class Row:
    """One table row: its label values, the number of runs and each metric's mean and std."""

    label: dict[str, str]
    runs: list[Evaluation]
    mean: dict[str, float]
    std: dict[str, float]          # sample standard deviation over the runs; absent for one run


@dataclass
class ResultsTable:
    label_keys: list[str]          # 'method', then whatever differs between rows
    metric_keys: list[str]
    rows: list[Row]

    def markdown(self) -> str:
        head = [*self.label_keys, "runs", *self.metric_keys]
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for row in self.rows:
            cells = [*(row.label[k] for k in self.label_keys), str(len(row.runs)),
                     *(self._cell(row, k, " ± ") for k in self.metric_keys)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        head = [*self.label_keys, "runs", *self.metric_keys]
        lines = [r"\begin{tabular}{" + "l" * (len(self.label_keys) + 1) + "r" * len(self.metric_keys) + "}",
                 r"\toprule", " & ".join(map(_latex_escape, head)) + r" \\", r"\midrule"]
        for row in self.rows:
            cells = [*(_latex_escape(row.label[k]) for k in self.label_keys), str(len(row.runs)),
                     *(self._cell(row, k, r" $\pm$ ") for k in self.metric_keys)]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        """One column per label, ``runs``, then ``KEY`` (mean) and ``KEY_std`` per metric; full precision."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*self.label_keys, "runs", *(f"{k}{s}" for k in self.metric_keys for s in ("", "_std"))])
        for row in self.rows:
            writer.writerow([*(row.label[k] for k in self.label_keys), len(row.runs),
                             *(v for k in self.metric_keys for v in (row.mean.get(k, ""), row.std.get(k, "")))])
        return out.getvalue()

    @staticmethod
    def _cell(row: Row, key: str, pm: str) -> str:
        if key not in row.mean:
            return "-"
        return f"{row.mean[key]:.2f}" + (f"{pm}{row.std[key]:.2f}" if key in row.std else "")


def _latex_escape(text: str) -> str:
    for char in ("\\", "&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, "\\" + char)
    return text


def _label_value(value: Any) -> str:
    return "-" if value is None else str(value)


def results_table(evaluations: list[Evaluation], metric_keys: Iterable[str] | None = None) -> ResultsTable:
    """Group ``evaluations`` into rows (same identity, different seeds) and average their metrics.

    Two evaluations with the same identity and the same seed are refused: they differ in
    something the provenance does not show (another checkpoint of one run, say).
    """
    if not evaluations:
        raise FcamError("no evaluation to tabulate")
    keys = list(dict.fromkeys(k for e in evaluations for k in e.identity))
    varying = [k for k in keys if k == "method" or len({repr(e.identity.get(k)) for e in evaluations}) > 1]
    groups: dict[tuple, list[Evaluation]] = {}
    for evaluation in evaluations:
        groups.setdefault(tuple(repr(evaluation.identity.get(k)) for k in varying), []).append(evaluation)
    if metric_keys is None:
        metric_keys = [k for k in METRIC_KEYS if any(k in e.metrics for e in evaluations)]
    metric_keys = list(metric_keys)
    rows = []
    for runs in groups.values():
        seeds = [e.seed for e in runs]
        if len(runs) > 1 and len(set(map(repr, seeds))) < len(runs):
            folders = ", ".join(str(e.folder) for e in runs)
            raise FcamError(f"{folders}: the same evaluation with the same seed ({seeds}) twice; pass only one "
                            f"of them, or runs that differ by {SEED_KEY}")
        mean, std = {}, {}
        for key in metric_keys:
            values = [float(e.metrics[key]) for e in runs if key in e.metrics]
            if len(values) == len(runs):
                mean[key] = sum(values) / len(values)
                if len(values) > 1:
                    std[key] = math.sqrt(sum((v - mean[key]) ** 2 for v in values) / (len(values) - 1))
        label = {k.removeprefix("config:"): _label_value(runs[0].identity.get(k)) for k in varying}
        rows.append(Row(label, runs, mean, std))
    return ResultsTable([k.removeprefix("config:") for k in varying], metric_keys, rows)


FORMATS = {"md": ResultsTable.markdown, "csv": ResultsTable.csv, "tex": ResultsTable.latex}


def write_results(folders: Iterable[str | Path], out_dir: str | Path | None = None,
                  metric_keys: Iterable[str] | None = None) -> ResultsTable:
    """Collect the evaluations under ``folders`` into one table; with ``out_dir``, write it there
    as ``results.md``, ``results.csv`` and ``results.tex``. The function the demo calls."""
    table = results_table(collect(folders), metric_keys)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for suffix, render in FORMATS.items():
            (out_dir / f"results.{suffix}").write_text(render(table))
    return table
