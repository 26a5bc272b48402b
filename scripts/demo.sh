#!/usr/bin/env bash
# The main job: set up .venv, generate the synthetic data, train the classifier and the F-CAM
# decoder on boxes and on masks, evaluate six CAM methods and F-CAM, write runs/demo/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/python scripts/demo.py "$@"
