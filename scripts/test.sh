#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine (as root), then run it.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${NDUSTRIA_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# mpich (a wheel) gives mpiexec in the venv's bin/, no system MPI needed.
pip install -q -e ".[test,parallel,profile,notebook]" mpich 2>&1 | grep -v "is ignored" || true
python -c "import ndustria, xxhash, numpy, pandas" # fail early and clearly if the install did not work

# The JupyterLab sidebar: Debian's chromium for the browser tests (never `playwright install`), node to build.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v chromium >/dev/null; then
    as_root apt-get update -q && as_root apt-get install -y -q chromium
fi
if ! command -v npm >/dev/null; then
    as_root apt-get update -q && as_root apt-get install -y -q nodejs npm
fi
# Rebuild the lab extension from source (labextension/README.md) and install that build into the venv.
# The assets committed under ndustria_nb/labextension are what a plain `pip install .` ships (no node needed);
# webpack's chunk names depend on the checkout's path, so the two are not compared byte for byte.
(cd labextension && npm ci --no-audit --no-fund --loglevel=error \
    && { npm run build >"${TMPDIR:-/tmp}/ndustria-labextension-build.log" 2>&1 || { cat "${TMPDIR:-/tmp}/ndustria-labextension-build.log" >&2; exit 1; }; })
pip install -q --no-deps -e . 2>&1 | grep -v "is ignored" || true  # install the fresh build into the venv

ruff check ndustria ndustria_nb tests examples bench
lint-imports  # the architecture: imports run one way, no cycles (pyproject.toml [tool.importlinter])
pytest -q "$@"
# The tutorial notebooks run top to bottom, with the user's cache (they do not pick one): twice on one fresh
# cache, cold then warm (every result found), so both runs' outputs must pass. The kernels' cache registry
# goes to a runtime folder of its own.
NB_TMP=$(mktemp -d)
trap 'rm -rf "$NB_TMP"' EXIT
for run in cold warm; do
    echo "notebooks, $run cache:"
    NDUSTRIA_CACHE_DIR="$NB_TMP/cache" JUPYTER_RUNTIME_DIR="$NB_TMP/runtime" pytest -q \
        --nbval-lax notebooks/
done
