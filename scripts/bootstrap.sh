#!/usr/bin/env bash
# Installs what redquorum needs on a fresh Debian/Ubuntu machine with Python >= 3.11,
# and with --tests what its tests need too, each only when missing (one `apt-get update`
# at most):
#   redis-server, redis-tools        the replicas, redis-cli and redis-benchmark
# with --tests:
#   prometheus (promtool)            alert-rule tests and the real-Prometheus dashboard test
#   nodejs, npm; ioredis in .cache/node   the ioredis client test
#   locales (en_US source)           the Lua collation test builds en_US.UTF-8 from it
# then a virtualenv in .venv with the project and its test dependencies; with
# REDQUORUM_MONITORING=1 also the [monitoring] extra (matplotlib, for
# monitoring/render_dashboard.py). Last, scripts/build_native.py compiles the
# per-request modules with mypyc (the [native] extra) when they changed; without a C
# compiler, or with REDQUORUM_NATIVE=0, the proxy runs as pure Python. Safe to run
# again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

TESTS=0
if [ "${1:-}" = "--tests" ]; then TESTS=1; fi
PYTHON=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

apt_updated=0
apt_install() {
    echo "bootstrap: installing $* with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    if [ "$apt_updated" = "0" ]; then
        $SUDO apt-get update -qq
        apt_updated=1
    fi
    $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
if [ "${REDQUORUM_BENCH:-0}" = "1" ]; then
    command -v nutcracker >/dev/null 2>&1 || [ -x /usr/sbin/nutcracker ] || missing+=(nutcracker)
fi
if [ "$TESTS" = "1" ]; then
    command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    { command -v localedef >/dev/null 2>&1 && [ -f /usr/share/i18n/locales/en_US ] \
        && [ -f /usr/share/i18n/charmaps/UTF-8.gz ]; } || missing+=(locales)
fi
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

# ioredis for tests/integration/test_clients.py, in the repo's ignored cache.
if [ "$TESTS" = "1" ] && [ ! -f .cache/node/node_modules/ioredis/package.json ]; then
    echo "bootstrap: npm install ioredis into .cache/node" >&2
    mkdir -p .cache/node
    npm install --no-audit --no-fund --silent --prefix .cache/node ioredis >/dev/null
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: redquorum needs Python >= 3.11 ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv
        "$PYTHON" -m venv .venv
    fi
fi
extras=test,native
if [ "${REDQUORUM_MONITORING:-0}" = "1" ]; then extras=test,native,monitoring; fi
stamp=.venv/.redquorum-installed-$extras
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[$extras]"
    touch "$stamp"
fi
.venv/bin/python scripts/build_native.py
