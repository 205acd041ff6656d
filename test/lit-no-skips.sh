#!/usr/bin/env bash
# lit-no-skips.sh LIT ARGS... — runs lit; with CI=true, a test that lit reports UNSUPPORTED
# (a missing ptxas, PTX interpreter, mixtral-compile or link toolchain) fails the run: CI
# installs every prerequisite, so a skip there is a broken setup. Locally skips stay skips.
# The one exception: a test whose REQUIRES names a host-* feature (test/lit.cfg.py: an ISA
# extension such as AVX-512F or VNNI) may be skipped on a host without it, since CI machines
# differ in CPU; each such skip is listed.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
[[ ${CI:-} == true ]] || exit "$rc"
root=$(cd "$(dirname "$0")/.." && pwd)
broken=()
while read -r name; do
  # "moec :: Codegen/x.mlir (12 of 40)" -> test/Codegen/x.mlir
  file=$root/test/$(sed -E 's/^[^:]*:: ([^ ]*).*/\1/' <<<"$name")
  if [[ -f $file ]] && grep -Eq '^// REQUIRES:.*\bhost-[a-z0-9]+' "$file"; then
    echo "note: $name skipped: the host lacks $(grep -Eo 'host-[a-z0-9]+' "$file" | sort -u | tr '\n' ' ')" >&2
  else
    broken+=("$name")
  fi
done < <(sed -n -e 's/^UNSUPPORTED: //p' \
                -e '/^Unsupported Tests (/,/^$/s/^  \([^ ].* :: .*\)/\1/p' "$log" | sort -u)
if [[ ${#broken[@]} -gt 0 ]]; then
  echo "error: CI=true and lit reported UNSUPPORTED tests (a prerequisite is missing):" >&2
  printf '  %s\n' "${broken[@]}" >&2
  exit 1
fi
exit "$rc"
