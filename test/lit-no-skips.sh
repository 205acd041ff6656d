#!/usr/bin/env bash
# lit-no-skips.sh LIT ARGS... — runs lit; with CI=true, a test that lit reports UNSUPPORTED
# (a missing ptxas, PTX interpreter, mixtral-compile or link toolchain) fails the run: CI
# installs every prerequisite, so a skip there is a broken setup. Locally skips stay skips.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [[ ${CI:-} == true ]] && grep -Eq '^(UNSUPPORTED: | *Unsupported *:)' "$log"; then
  echo "error: CI=true and lit reported UNSUPPORTED tests (a prerequisite is missing):" >&2
  grep -E '^UNSUPPORTED: ' "$log" >&2
  exit 1
fi
exit "$rc"
