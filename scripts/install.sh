#!/usr/bin/env bash
# Install ci-eval from the action's own checkout into a private virtual environment, leaving the
# user's Python alone (as cibuildwheel's action does). Prints the path of the ci-eval binary.
#   install.sh PYTHON SOURCE_DIR [EXTRAS]
set -euo pipefail
python=$1 source=$2 extras=${3:-}
venv="${RUNNER_TEMP:-/tmp}/ci-eval-venv"
if [ ! -x "$venv/bin/ci-eval" ]; then
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$source${extras:+[$extras]}" >&2
fi
echo "$venv/bin/ci-eval"
