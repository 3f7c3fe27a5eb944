#!/usr/bin/env bash
# The whole test suite (called by `make test`, which CI runs). Prints pytest's summary line;
# "no tests collected" (pytest exit 5) is a failure here, not a pass.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NETPLANE_VENV:-$ROOT/.venv}"
cd "$ROOT"
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@" tests
rc=$?
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
