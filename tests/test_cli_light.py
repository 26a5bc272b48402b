"""Every command answers --help and argument errors without importing torch, torchvision,
OpenCV, numba or matplotlib (they take seconds to import; the work imports them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fcam.cli.common import run_cli

ROOT = Path(__file__).resolve().parents[1]

PROBE = r'''
import importlib, importlib.abc, pkgutil, sys

HEAVY = {"torch", "torchvision", "cv2", "numba", "matplotlib"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"heavy import: {name}")

sys.meta_path.insert(0, Block())
import fcam.cli, fcam.config, fcam.errors, fcam.interpolation

for info in pkgutil.iter_modules(fcam.cli.__path__):
    module = importlib.import_module(f"fcam.cli.{info.name}")
    if not hasattr(module, "main"):
        continue
    for argv, status in ((["--help"], 0), ([], 2), (["--no-such-flag"], 2)):
        try:
            module.main(argv)
        except SystemExit as exit:
            assert exit.code == status, (info.name, argv, exit.code)
        else:
            raise AssertionError(f"{info.name} {argv} did not exit")
    print("ok", info.name)
'''


def test_commands_parse_without_heavy_imports():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    scripts = re.findall(r'^fcam-[a-z-]+ = "fcam\.cli\.(\w+):main"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert len(scripts) >= 5
    checked = set(re.findall(r"^ok (\w+)$", result.stdout, re.M))
    assert set(scripts) <= checked, (scripts, checked)


def test_help_documents_fcam_debug():
    result = subprocess.run([sys.executable, "-m", "fcam.cli.train_cls", "--help"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0 and "FCAM_DEBUG=1" in result.stdout


def test_user_errors_are_one_line_unless_fcam_debug(tmp_path):
    command = [sys.executable, "-m", "fcam.cli.train_cls", "--config", str(tmp_path / "missing.yaml"),
               "--output", str(tmp_path / "run")]
    plain = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert plain.returncode == 2 and plain.stderr == f"error: config file not found: {tmp_path / 'missing.yaml'}\n"
    debug = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "FCAM_DEBUG": "1"})
    assert debug.returncode == 2 and debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.splitlines()[-1] == plain.stderr.strip()


def test_other_exceptions_keep_their_traceback():
    def broken(argv):
        raise ValueError("an internal contract broke")

    with pytest.raises(ValueError, match="internal contract"):
        run_cli(broken, [])
