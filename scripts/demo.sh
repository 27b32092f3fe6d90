#!/usr/bin/env bash
# Install modelyard with the demo's extras into .venv and run the demo.
# Usage: bash scripts/demo.sh [--models N] [--requests N] [--workspace DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[demo]'
exec .venv/bin/modelyard demo "$@"
