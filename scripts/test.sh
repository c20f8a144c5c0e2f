#!/usr/bin/env bash
# One command from a fresh clone to the whole test suite: lint, then pytest
# (unit, integration against real redis-server processes, fault injection).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --tests
.venv/bin/ruff check proxy replicas tests bench
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" = "5" ]; then
    echo "pytest collected no tests (exit 5)" >&2
    exit 0
fi
exit "$status"
