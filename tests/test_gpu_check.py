"""scripts/gpu_check.py: the CPU smoke mode runs every check and writes the table; a failing check
is reported without hiding the others and sets the exit status; without CUDA the script declines."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
BACKBONES = ("resnet50", "vgg16", "inceptionv3")


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)


def table_rows(text: str) -> dict[str, str]:
    """check name -> result, from the Markdown table."""
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return {cells[0][2:]: cells[1] for cells in rows[2:]}


def load_script(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_smoke_runs_every_check_and_writes_the_table(tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    result = run_script("--cpu-smoke", str(report), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    text = report.read_text()
    assert text in result.stdout
    assert text.splitlines()[2].startswith("machine: CPU only (--cpu-smoke)")
    rows = table_rows(text)
    expected = [
        *(f"CAM parity: {m}" for m in ("cam", "gradcam", "gradcampp", "smoothgradcampp", "xgradcam", "layercam")),
        "seed parity: foreground (Otsu, 11x11 erosion)", "seed parity: background (lowest CAM)",
        "seeds sampled on the device", "CRF parity: permutohedral", "CRF parity: exact",
        "evaluator parity: MaxBoxAcc", "evaluator parity: MaxBoxAccV2", "evaluator parity: PxAP",
        "AMP training: fcam-train-cls", "AMP training: fcam-train-decoder",
        "torchrun (1 process): fcam.cli.train_cls", "torchrun (1 process): fcam.cli.eval",
        "gloo process group (1 rank): all-reduce, DDP AMP step",
        *(f"throughput: {b} {case}, AMP {amp}" for b in BACKBONES
          for amp in ("off", "on") for case in ("classifier train step", "decoder train step", "CAM eval")),
        "CRF loss speed (permutohedral)",
    ]
    assert list(rows) == expected
    assert set(rows.values()) == {"PASS"}
    assert f"{len(expected)} of {len(expected)} checks passed" in text
    for line in result.stdout.splitlines()[:len(expected)]:
        assert line.startswith("PASS  ")


def test_a_failing_check_is_reported_and_sets_the_exit_status(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_check = load_script(monkeypatch)

    def checks(settings, work):
        report = gpu_check.Report()
        report.add("fine", True, "1.0")
        report.run("broken", lambda: 1 / 0)
        report.run("after", lambda: report.add("after", True, "2.0"))
        return report

    monkeypatch.setattr(gpu_check, "run_checks", checks)
    out = tmp_path / "report.md"
    assert gpu_check.main(["--cpu-smoke", str(out)]) == 1
    text = out.read_text()
    assert table_rows(text) == {"fine": "PASS", "broken": "**FAIL**", "after": "PASS"}
    assert "| broken | **FAIL** | error: ZeroDivisionError: division by zero |" in text
    assert "2 of 3 checks passed" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script runs the real checks")
def test_without_cuda_it_says_so_and_exits_0(tmp_path: Path) -> None:
    result = run_script(str(tmp_path / "report.md"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "no CUDA device: GPU checks not run"
    assert not (tmp_path / "report.md").exists()
