"""scripts/demo.py's runner: parallel commands, each after the steps it waits for, threads set, failures stop all."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"

# A stand-in for an fcam command: python -m demo_step NAME SECONDS [REQUIRED_FILE] [EXIT_STATUS]
STEP_MODULE = """
import os, sys, time
name, seconds = sys.argv[1], float(sys.argv[2])
folder = os.path.dirname(os.path.abspath(__file__))
if len(sys.argv) > 3 and sys.argv[3] != "-" and not os.path.exists(os.path.join(folder, sys.argv[3])):
    sys.exit(3)
print("threads", os.environ.get("OMP_NUM_THREADS"), flush=True)
began = time.time()
time.sleep(seconds)
if len(sys.argv) > 4:
    sys.exit(int(sys.argv[4]))
with open(os.path.join(folder, name), "w") as done:
    done.write(f"{began} {time.time()}")
"""


@pytest.fixture()
def demo(tmp_path, monkeypatch):
    (tmp_path / "demo_step.py").write_text(STEP_MODULE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    spec = importlib.util.spec_from_file_location("fcam_demo_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _step(demo, tmp_path, name, seconds, after=(), required="-", status=None):
    args = ("demo_step", name, str(seconds), required, *([] if status is None else [str(status)]))
    return demo.Step(name, args, tmp_path / "logs" / f"{name}.log", after)


def test_steps_run_in_parallel_after_their_prerequisites(demo, tmp_path):
    # c comes first in the list but waits for a (it exits with an error if a's file is missing).
    steps = [_step(demo, tmp_path, "c", 0.0, after=("a",), required="a"), _step(demo, tmp_path, "a", 1.0),
             _step(demo, tmp_path, "b", 1.0)]
    times = demo.run_steps(steps, jobs=2, threads=3)
    assert set(times) == {"a", "b", "c"}
    spans = {name: [float(t) for t in (tmp_path / name).read_text().split()] for name in "abc"}
    # a and b overlap (two jobs); c starts only once a has written its file.
    assert spans["a"][0] < spans["b"][1] and spans["b"][0] < spans["a"][1]
    assert spans["c"][0] >= spans["a"][1]
    assert all((tmp_path / "logs" / f"{name}.log").read_text().startswith("threads 3") for name in "abc")


def test_one_job_runs_the_steps_one_after_the_other(demo, tmp_path):
    demo.run_steps([_step(demo, tmp_path, "a", 0.3), _step(demo, tmp_path, "b", 0.3)], jobs=1, threads=1)
    a, b = ([float(t) for t in (tmp_path / name).read_text().split()] for name in "ab")
    assert b[0] >= a[1]


def test_a_failing_step_names_its_log_and_stops_the_others(demo, tmp_path):
    steps = [_step(demo, tmp_path, "slow", 30.0), _step(demo, tmp_path, "bad", 0.2, status=5),
             _step(demo, tmp_path, "later", 0.0, after=("bad",))]
    began = time.time()
    with pytest.raises(RuntimeError, match=r"bad failed \(exit status 5\); see .*bad\.log"):
        demo.run_steps(steps, jobs=2, threads=1)
    assert time.time() - began < 20
    assert not (tmp_path / "slow").exists() and not (tmp_path / "later").exists()
