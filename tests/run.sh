#!/usr/bin/env bash
# The test command from README.md (and exactly what CI runs through .ci/run).
# Installs what the suite needs, then lint, format check, type check and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suite needs (docker.io for a real dockerd, busybox-static for its image).
bash .ci/system-deps.sh

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

# In CI the Docker tests must run, not skip: a missing engine is a failure there.
if [ "${CI:-}" = "true" ] && [ "$(id -u)" = "0" ]; then
    export ORCHESTRATOR_TEST_DOCKER="${ORCHESTRATOR_TEST_DOCKER:-require}"
fi

echo "== ruff check";  .venv/bin/ruff check .
echo "== ruff format"; .venv/bin/ruff format --check .
echo "== mypy";        .venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure, not a pass" >&2
    exit 1
fi
exit "$status"
