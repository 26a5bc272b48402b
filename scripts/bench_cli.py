"""Wall time of each command's ``--help`` as a whole process (interpreter start included), next to
the import of torch alone in the same run: the commands must answer before torch could load.

    python scripts/bench_cli.py [--repeat 5]

Run it from the repository root with PYTHONPATH pointing at it to time this checkout.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands() -> dict[str, str]:
    """Console script name -> module, from pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    return dict(re.findall(r'^(fcam-[a-z-]+) = "([\w.]+):main"', text, re.M))


def wall(argv: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (median and min reported)")
    args = parser.parse_args()
    rows = {name: wall([sys.executable, "-m", module, "--help"], args.repeat) for name, module in commands().items()}
    rows["(import torch)"] = wall([sys.executable, "-c", "import torch"], args.repeat)
    print(f"{'command':<28}{'median s':>10}{'min s':>8}")
    for name, times in rows.items():
        print(f"{name + (' --help' if name.startswith('fcam') else ''):<28}"
              f"{statistics.median(times):>10.2f}{min(times):>8.2f}")
    slowest = max(statistics.median(t) for n, t in rows.items() if n.startswith("fcam"))
    print(f"slowest --help: {slowest:.2f} s ({'within' if slowest <= 1.0 else 'OVER'} the 1 s budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
