"""fcam-results: evaluation folders of several methods, runs and seeds in one table."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from fcam.cli.eval import main as eval_main
from fcam.cli.results import main as results_main
from fcam.cli.train_cls import main as train_cls
from fcam.engine.results import collect, results_table, write_results
from fcam.errors import FcamError

from conftest import tiny_config


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def evaluations(synth_root, trained_classifier, tmp_path_factory) -> dict[str, Path]:
    """Two 1-epoch classifiers that differ only by their seed, and the 2-epoch one of conftest,
    each evaluated with CAM and GradCAM on the test split."""
    root = tmp_path_factory.mktemp("results")
    runs = {"seed1": None, "seed2": None, "epochs2": trained_classifier}
    for seed in (1, 2):
        cfg = root / f"seed{seed}.yaml"
        cfg.write_text(yaml.safe_dump(tiny_config(synth_root, train={"epochs": 1, "seed": seed})))
        assert train_cls(["--config", str(cfg), "--output", str(root / f"run{seed}")]) == 0
        runs[f"seed{seed}"] = root / f"run{seed}"
    folders = {}
    for name, run in runs.items():
        folders[name] = root / f"eval_{name}"
        assert eval_main(["--checkpoint", str(run / "best.pt"), "--method", "cam", "gradcam", "--split", "test",
                          "--output", str(folders[name])]) == 0
    return folders


def test_provenance_names_method_split_and_config(evaluations):
    provenance = json.loads((evaluations["seed2"] / "gradcam/provenance.json").read_text())
    assert provenance["method"] == "gradcam" and provenance["split"] == "test" and provenance["dataset"] == "CUB"
    assert provenance["config"]["train"]["seed"] == 2
    assert provenance["checkpoints"]["classifier"]["config"]["train"]["epochs"] == 1


def test_seeds_are_averaged_and_other_differences_are_columns(evaluations, tmp_path, capsys):
    table = write_results(evaluations.values(), tmp_path / "table")
    assert table.label_keys == ["method", "train.epochs"]
    rows = {(r.label["method"], r.label["train.epochs"]): r for r in table.rows}
    assert set(rows) == {("cam", "1"), ("gradcam", "1"), ("cam", "2"), ("gradcam", "2")}
    for method in ("cam", "gradcam"):
        seeds = [metrics(evaluations[f"seed{s}"] / method)["MaxBoxAcc"] for s in (1, 2)]
        row = rows[(method, "1")]
        assert len(row.runs) == 2
        assert row.mean["MaxBoxAcc"] == pytest.approx(statistics.mean(seeds))
        assert row.std["MaxBoxAcc"] == pytest.approx(statistics.stdev(seeds))
        single = rows[(method, "2")]
        assert len(single.runs) == 1 and "MaxBoxAcc" not in single.std
        assert single.mean["MaxBoxAcc"] == metrics(evaluations["epochs2"] / method)["MaxBoxAcc"]
    markdown = (tmp_path / "table/results.md").read_text()
    mean, std = rows[("cam", "1")].mean["MaxBoxAcc"], rows[("cam", "1")].std["MaxBoxAcc"]
    assert markdown.splitlines()[0].startswith("| method | train.epochs | runs | MaxBoxAcc | MaxBoxAccV2 |")
    assert f"| cam | 1 | 2 | {mean:.2f} ± {std:.2f} |" in markdown
    csv_lines = (tmp_path / "table/results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,train.epochs,runs,MaxBoxAcc,MaxBoxAcc_std,")
    assert len(csv_lines) == 5
    latex = (tmp_path / "table/results.tex").read_text()
    assert r"MaxBoxAccV2\_IoU30" in latex and r"$\pm$" in latex
    assert latex.count(r"\\") == 5

    assert results_main([str(p) for p in evaluations.values()]) == 0
    assert capsys.readouterr().out == markdown


def test_the_same_run_twice_is_refused(evaluations, capsys):
    with pytest.raises(FcamError, match="same seed"):
        results_table(collect([evaluations["seed1"], evaluations["seed1"]]))
    assert results_main([str(evaluations["seed1"]), "/no/such/folder"]) == 2
    assert "no such evaluation folder" in capsys.readouterr().err
