"""Wall time of each command's ``--help`` as a whole process (interpreter start included), next to
the import of torch alone in the same run: the commands must answer before torch could load.

    python scripts/bench_cli.py [--repeat 5] [--write-docs]

Run it from the repository root with PYTHONPATH pointing at it to time this checkout.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks_page import PAGE, write_section

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 1.0


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
    parser.add_argument("--write-docs", action="store_true", help=f"update this script's section of {PAGE.name}")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    rows = {name: wall([sys.executable, "-m", module, "--help"], args.repeat) for name, module in commands().items()}
    torch_times = wall([sys.executable, "-c", "import torch"], args.repeat)
    torch_median = statistics.median(torch_times)
    lines = ["| command | median s | min s | vs `import torch` |", "| --- | --- | --- | --- |"]
    for name, times in {**{f"`{n} --help`": t for n, t in rows.items()}, "`python -c 'import torch'`": torch_times}.items():
        lines.append(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} | "
                     f"{statistics.median(times) / torch_median:.2f}x |")
    slowest = max(statistics.median(t) for t in rows.values())
    verdict = f"slowest --help: {slowest:.2f} s ({'within' if slowest <= BUDGET_S else 'OVER'} the {BUDGET_S:.0f} s budget)"
    print("\n".join(lines))
    print(verdict)
    if args.write_docs:
        write_section("bench_cli", "\n".join([
            "## Command start-up (scripts/bench_cli.py)",
            "",
            f"`python scripts/bench_cli.py --repeat {args.repeat} --write-docs` on {datetime.date.today().isoformat()}; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
            f"load average {load_start:.1f}. Each command's `--help` as a whole process (interpreter start "
            "included), next to importing torch alone in the same run: the commands import torch, OpenCV and "
            "matplotlib only when the work needs them.",
            "",
            *lines,
            "",
            verdict + ".",
        ]))
        print(f"updated {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
