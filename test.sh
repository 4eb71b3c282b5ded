#!/usr/bin/env bash
# The test command: unit, in-process server and docker tests (images are built on demand by build.sh).
# Extra arguments go to pytest, e.g. ./test.sh -m "not docker" for the quick ones only.
set -euo pipefail
cd "$(dirname "$0")"
set +e
python3 -m pytest "$@"
status=$?
set -e
# pytest exits 5 when a selection matched no test: that is a failure of the selection, say so.
((status == 5)) && echo "test.sh: no test was collected" >&2
exit $status
