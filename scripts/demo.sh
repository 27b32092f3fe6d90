#!/usr/bin/env bash
# Install modelyard with the demo's extras into .venv and run the demo.
# Usage: bash scripts/demo.sh [--models N] [--requests N] [--workspace DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
began=$SECONDS
echo "==> Creating .venv and upgrading pip"
python3 -m venv .venv
.venv/bin/python -m pip install --upgrade pip
echo "==> Installing modelyard[demo] into .venv (XGBoost, boto3: a minute or two the first time)"
.venv/bin/python -m pip install -e '.[demo]'
echo "==> Installed in $((SECONDS - began)) s; running the demo"
exec .venv/bin/modelyard demo "$@"
