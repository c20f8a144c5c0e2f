#!/usr/bin/env bash
# One command from a fresh clone to a running proxy on 3 embedded local replicas.
# Extra arguments go to `redquorum up` (e.g. --listen 127.0.0.1:7000 --replicas 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/redquorum up "$@"
