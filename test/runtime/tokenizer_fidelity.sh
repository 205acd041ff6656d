#!/bin/sh
# tokenizer_fidelity.sh PYTHON TEST_BINARY WORKDIR — regenerates the expected ids with the Python
# `sentencepiece` package (tokenizer_expected.py), then runs TokenizerFidelity.* on that file, so
# the comparison is always against what the Python package produces now. Needs
# MOEC_TOKENIZER_MODEL.
set -eu
python=$1 tests=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
: "${MOEC_TOKENIZER_MODEL:?set MOEC_TOKENIZER_MODEL to a Mixtral tokenizer.model}"
mkdir -p "$work"
"$python" "$here/tokenizer_expected.py" --model "$MOEC_TOKENIZER_MODEL" \
  --out "$work/tokenizer_expected.json"
MOEC_TOKENIZER_EXPECTED="$work/tokenizer_expected.json" \
  exec "$tests" --gtest_filter='TokenizerFidelity.*'
