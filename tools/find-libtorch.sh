#!/bin/sh
# Prints the directory of the libtorch CellPredX builds against (it holds lib/ and include/).
# Looks, in order, at $CELLPREDX_LIBTORCH, the location `make setup` installs to
# ($CELLPREDX_HOME/venv, default ~/.cellpredx/venv), then Python's own `torch`.
# Exits 1 with the reason and the fix when none is usable.
# Usage: tools/find-libtorch.sh [--check-version]
here=$(cd "$(dirname "$0")" && pwd)
wanted=$(cat "$here/libtorch-version")
home=${CELLPREDX_HOME:-$HOME/.cellpredx}
fix="install it with: make setup   (or: python3 -m venv $home/venv && $home/venv/bin/pip install torch==$wanted)"

candidates=""
if [ -n "$CELLPREDX_LIBTORCH" ]; then
  candidates=$CELLPREDX_LIBTORCH
else
  for dir in "$home"/venv/lib/python3*/site-packages/torch; do
    [ -d "$dir" ] && candidates="$candidates $dir"
  done
  # R puts its own lib directory first in LD_LIBRARY_PATH, which makes some Pythons load the
  # wrong libpython; ask Python without it.
  for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
      dir=$(env -u LD_LIBRARY_PATH "$py" -c "import importlib.util as u; s = u.find_spec('torch'); print(s.submodule_search_locations[0] if s else '')" 2>/dev/null)
      [ -n "$dir" ] && candidates="$candidates $dir"
      break
    fi
  done
fi

for dir in $candidates; do
  if [ -f "$dir/lib/libtorch_cpu.so" ] && [ -d "$dir/include" ]; then
    version=$(sed -n "s/^__version__ = ['\"]\([^'\"+]*\).*/\1/p" "$dir/version.py" 2>/dev/null)
    [ -z "$version" ] && version=$(cut -d+ -f1 "$dir/build-version" 2>/dev/null)
    if [ "$version" != "$wanted" ]; then
      echo "CellPredX needs libtorch $wanted but $dir is version ${version:-unknown}; $fix" >&2
      exit 1
    fi
    echo "$dir"
    exit 0
  fi
done
if [ -n "$CELLPREDX_LIBTORCH" ]; then
  echo "CELLPREDX_LIBTORCH=$CELLPREDX_LIBTORCH has no lib/libtorch_cpu.so and include/; point it at a libtorch $wanted directory or $fix" >&2
else
  echo "libtorch $wanted was not found (looked in $home/venv and Python's torch); $fix" >&2
fi
exit 1
