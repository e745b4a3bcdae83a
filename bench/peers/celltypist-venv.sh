#!/usr/bin/env bash
# Creates (once) the Python virtual environment CellTypist runs in, and prints its python's path.
# CellTypist 1.7 breaks with scikit-learn >= 1.7, hence the pin. Safe to re-run: an environment
# that already imports celltypist is reused as is. On failure pip's own error is shown and the
# exit status is non-zero, so the caller can record CellTypist as failed and go on.
# Usage: bench/peers/celltypist-venv.sh   (env: CELLPREDX_BENCH_VENV, default ~/.cellpredx/bench-venv)
set -uo pipefail
venv=${CELLPREDX_BENCH_VENV:-$HOME/.cellpredx/bench-venv}
python="$venv/bin/python"
if [ -x "$python" ] && "$python" -c 'import celltypist, scipy' 2>/dev/null; then
  echo "$python"
  exit 0
fi
echo "setting up CellTypist in $venv (one time)" >&2
python3 -m venv "$venv" >&2 || { echo "python3 -m venv failed; install python3-venv" >&2; exit 1; }
if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "celltypist==1.7.*" "scikit-learn<1.7" scipy >&2; then
  echo "pip could not install celltypist==1.7.* (see pip's error above)" >&2
  exit 1
fi
echo "$python"
