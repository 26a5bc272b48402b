#!/usr/bin/env bash
# Check a CUDA machine for fcam (CPU/CUDA parity, AMP training, torchrun + NCCL, throughput, memory)
# and write the Markdown table to REPORT (default gpu_check.md). Without a GPU it says so, status 0.
# Usage: bash scripts/gpu_check.sh [REPORT.md] [--cpu-smoke]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  bash scripts/setup_venv.sh
fi
exec .venv/bin/python scripts/gpu_check.py "$@"
