"""Check the torch and torchvision floors that pyproject.toml declares, the way a user meets them:
a fresh virtual environment with exactly those versions from the package registry, fcam's other
dependencies, and a fast part of the test suite run there against this checkout.

    python scripts/check_torch_floor.py                 # a throwaway venv under /tmp, removed after
    python scripts/check_torch_floor.py --keep --venv /tmp/floor   # keep (and reuse) it

The first run downloads torch's wheel and its CUDA libraries (about 2.7 GB for torch 2.3 on
Linux x86_64: the registry's Linux wheels are CUDA builds; they run on the CPU).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST_TESTS = ["tests/test_config.py", "tests/test_losses_crf.py", "tests/test_losses_size.py",
              "tests/test_losses_seeds.py", "tests/test_cams.py", "tests/test_models.py",
              "tests/test_training.py", "tests/test_engine_logs.py"]


def declared_floor(package: str) -> str:
    """The version in ``"<package>>=X"`` of pyproject.toml's dependencies."""
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf'"{package}>=([0-9][0-9.]*)"', text)
    if match is None:
        sys.exit(f"pyproject.toml declares no '{package}>=' floor")
    return match.group(1)


def run(command: list[str], **kwargs) -> float:
    print("$", " ".join(command), flush=True)
    started = time.time()
    subprocess.run(command, check=True, **kwargs)
    return time.time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", help="venv folder (default: a new one under the temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the venv afterwards")
    parser.add_argument("tests", nargs="*", default=FAST_TESTS, help="test files to run there")
    args = parser.parse_args()
    torch_floor, vision_floor = declared_floor("torch"), declared_floor("torchvision")
    venv = Path(args.venv) if args.venv else Path(tempfile.mkdtemp(prefix="fcam-floor-"))
    python = venv / "bin" / "python"
    try:
        if not python.exists():
            run([sys.executable, "-m", "venv", str(venv)])
        seconds = run([str(python), "-m", "pip", "install", "-q", f"torch=={torch_floor}",
                       f"torchvision=={vision_floor}", f"{ROOT}[test]"])
        print(f"installed torch {torch_floor}, torchvision {vision_floor} and fcam's dependencies in {seconds:.0f}s")
        run([str(python), "-c", "import torch, torchvision, numpy; "
             "print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'numpy', numpy.__version__)"])
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        seconds = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.tests], cwd=ROOT, env=env)
        print(f"tests passed with torch {torch_floor} / torchvision {vision_floor} in {seconds:.0f}s")
    finally:
        if not args.keep:
            shutil.rmtree(venv, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
