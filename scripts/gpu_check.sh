#!/usr/bin/env bash
# Check a CUDA machine for fcam: CPU/CUDA parity, AMP training, torchrun + NCCL, throughput and peak
# memory, printed as a Markdown table and written to REPORT (default gpu_check.md, relative to the
# current directory). Without a CUDA device it says so and exits 0. Runs scripts/gpu_check.py with
# the repository's .venv (created by scripts/setup_venv.sh when missing).
# Usage: bash scripts/gpu_check.sh [REPORT.md] [--cpu-smoke]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  bash "$ROOT/scripts/setup_venv.sh"
fi
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/gpu_check.py" "$@"
