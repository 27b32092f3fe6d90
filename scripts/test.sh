#!/usr/bin/env bash
# Install modelyard with everything its tests need into .venv, then lint, type-check and test.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
# The dashboard test drives Debian's chromium through Playwright (never `playwright install`),
# a real Prometheus scrapes the server, LightGBM needs OpenMP: install whichever is missing.
missing=()
command -v chromium >/dev/null || missing+=(chromium fonts-liberation)
command -v prometheus >/dev/null || missing+=(prometheus)
ldconfig -p 2>/dev/null | grep -q 'libgomp.so.1 ' || missing+=(libgomp1)  # LightGBM's wheel links it
if ((${#missing[@]})); then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    # the tests start their own Prometheus on loopback; not a system-wide one on every interface
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
        "${sudo[@]}" systemctl disable --now prometheus
    fi
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
exec .venv/bin/pytest "$@"
