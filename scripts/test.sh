#!/usr/bin/env bash
# The test command: set up .venv (if needed) and run the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q "$@"
