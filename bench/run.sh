#!/bin/sh
# Run the benchmark harness with the project's virtualenv: bench/run.sh [--quick] [--profile] ...
cd "$(dirname "$0")/.." || exit 1
exec .venv/bin/python -m bench.run "$@"
