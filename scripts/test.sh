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

ruff check ndustria ndustria_nb tests examples bench
pytest -q "$@"
