#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine (as root), then run it.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { echo "== $(date +%H:%M:%S) $*"; }  # one line per stage: a fresh machine spends minutes installing
checkout_state() { git status --porcelain --untracked-files=all 2>/dev/null || true; }
BEFORE=$(checkout_state)  # the run must leave the checkout as it found it

VENV=${NDUSTRIA_VENV:-.venv}
stage "python environment: $VENV"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# mpich (a wheel) gives mpiexec in the venv's bin/, no system MPI needed.
stage "pip install -e '.[test,mpi,dask]' mpich"
pip install -q -e ".[test,mpi,dask]" mpich 2>&1 | grep -v "is ignored" || true
python -c "import ndustria, xxhash, numpy, pandas" # fail early and clearly if the install did not work

# The JupyterLab sidebar: Debian's chromium for the browser tests (never `playwright install`), node to build.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
stage "chromium and node (apt, when missing)"
if ! command -v chromium >/dev/null; then
    as_root apt-get update -q && as_root apt-get install -y -q chromium
fi
if ! command -v npm >/dev/null; then
    as_root apt-get update -q && as_root apt-get install -y -q nodejs npm
fi
# Rebuild the lab extension from source (labextension/README.md) in a copy of labextension/, so the checkout
# stays as it was: the assets committed under ndustria_nb/labextension are what a plain `pip install .` ships
# (no node needed); webpack's chunk names depend on the path, so a build never matches them byte for byte.
# The fresh build replaces the committed one in the venv only, where JupyterLab (and the browser tests) load it.
stage "lab extension: npm ci, build (in a copy), install into $VENV"
BUILD=$(mktemp -d "${TMPDIR:-/tmp}/ndustria-labext.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
(cd labextension && npm ci --no-audit --no-fund --loglevel=error)
mkdir -p "$BUILD/labextension"
tar -C labextension --exclude=./node_modules --exclude=./lib --exclude=./tsconfig.tsbuildinfo -cf - . \
    | tar -C "$BUILD/labextension" -xf -
ln -s "$PWD/labextension/node_modules" "$BUILD/labextension/node_modules"
(cd "$BUILD/labextension" && { npm run build >"$BUILD/build.log" 2>&1 || { cat "$BUILD/build.log" >&2; exit 1; }; })
pip install -q --no-deps -e . 2>&1 | grep -v "is ignored" || true
SHARE="$VENV/share/jupyter/labextensions/ndustria-labextension"
rm -rf "$SHARE/static" && cp -r "$BUILD/ndustria_nb/labextension/." "$SHARE/"

stage "ruff, lint-imports"
ruff check ndustria ndustria_nb tests examples bench
lint-imports --no-cache  # the architecture: imports run one way, no cycles (pyproject.toml [tool.importlinter])
stage "pytest $*"
pytest -q "$@"
# The tutorial notebooks run top to bottom, with the user's cache (they do not pick one): twice on one fresh
# cache, cold then warm (every result found), so both runs' outputs must pass. The kernels' cache registry
# goes to a runtime folder of its own.
NB_TMP=$(mktemp -d)
trap 'rm -rf "$BUILD" "$NB_TMP"' EXIT
for run in cold warm; do
    stage "nbval: the tutorial notebooks, $run cache"
    NDUSTRIA_CACHE_DIR="$NB_TMP/cache" JUPYTER_RUNTIME_DIR="$NB_TMP/runtime" pytest -q \
        --nbval-lax notebooks/
done
if [ "$(checkout_state)" != "$BEFORE" ]; then
    echo "scripts/test.sh changed the checkout (git status before and after differ):" >&2
    diff <(echo "$BEFORE") <(checkout_state) >&2 || true
    exit 1
fi
stage "done: the checkout is as it was"
