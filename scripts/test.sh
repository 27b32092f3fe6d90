#!/usr/bin/env bash
# Install modelyard with everything its tests need into .venv, then lint, type-check and test.
# Usage: bash scripts/test.sh [pytest arguments]
# Each step says what it does and how long it took; pip shows what it downloads and installs.
set -euo pipefail
cd "$(dirname "$0")/.."
began=$SECONDS
step_began=$SECONDS
step() {  # step "what": closes the previous step with its duration, announces the next
    if [ -n "${step_name:-}" ]; then
        echo "==> ${step_name}: done in $((SECONDS - step_began)) s"
    fi
    step_name=$1
    step_began=$SECONDS
    echo "==> $1 ($(date +%H:%M:%S), $((SECONDS - began)) s so far)"
}
# The dashboard test drives Debian's chromium through Playwright (never `playwright install`),
# a real Prometheus scrapes the server, LightGBM needs OpenMP: install whichever is missing.
missing=()
command -v chromium >/dev/null || missing+=(chromium fonts-liberation)
command -v prometheus >/dev/null || missing+=(prometheus)
ldconfig -p 2>/dev/null | grep -q 'libgomp.so.1 ' || missing+=(libgomp1)  # LightGBM's wheel links it
if ((${#missing[@]})); then
    step "Installing ${missing[*]} with apt-get"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    # the tests start their own Prometheus on loopback; not a system-wide one on every interface
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
        "${sudo[@]}" systemctl disable --now prometheus
    fi
fi
step "Creating .venv and upgrading pip"
python3 -m venv .venv
.venv/bin/python -m pip install --upgrade pip
step "Installing modelyard[test] into .venv (frameworks, SeaweedFS, linters: a few minutes the first time)"
.venv/bin/python -m pip install -e '.[test]'
step "Linting with ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
step "Type-checking with mypy (strict; a few minutes without its cache in .mypy_cache)"
.venv/bin/mypy
step "Testing with pytest"
set +e
.venv/bin/pytest "$@"
status=$?
set -e
echo "==> Testing with pytest: done in $((SECONDS - step_began)) s; all steps in $((SECONDS - began)) s"
exit $status
