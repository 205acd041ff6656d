#!/bin/sh
# tokenizer_fidelity.sh PYTHON TEST_BINARY WORKDIR — regenerates the expected ids with the Python
# `sentencepiece` package (tokenizer_expected.py), then runs TokenizerFidelity.* on that file, so
# the comparison is always against what the Python package produces now. Needs
# MOEC_TOKENIZER_MODEL.
# Without them: exit 77 (ctest's SKIP_RETURN_CODE), or 1 with CI=true.
set -eu
python=$1 tests=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
missing=""
[ -x "$python" ] || missing="$python (run tools/setup.sh)"
[ -f "${MOEC_TOKENIZER_MODEL:-}" ] || missing="${missing:+$missing; }MOEC_TOKENIZER_MODEL (a Mixtral tokenizer.model)"
if [ -n "$missing" ]; then
  if [ "${CI:-}" = true ]; then
    echo "error: CI=true and a prerequisite is missing: $missing" >&2
    exit 1
  fi
  echo "skip: missing $missing"
  exit 77
fi
mkdir -p "$work"
"$python" "$here/tokenizer_expected.py" --model "$MOEC_TOKENIZER_MODEL" \
  --out "$work/tokenizer_expected.json"
MOEC_TOKENIZER_EXPECTED="$work/tokenizer_expected.json" \
  exec "$tests" --gtest_filter='TokenizerFidelity.*'
