#!/bin/bash
# test/fuzz/build.sh — configures and builds the one ASan+UBSan build of the hostile-input
# tests (test/fuzz/CMakeLists.txt) in build-fuzz/: the instrumented runtime, its unit tests,
# the libFuzzer targets and, when build/bin/mixtral-compile exists, fuzz_model.
# run.sh and sanitize.sh call it first (unless given --prebuilt, as ctest does once this has
# run as their fixture). Environment: CXX (default clang++-22), BUILD (default build-fuzz),
# MOEC_TOKENIZER_MODEL (default: mistral-common's tokenizer.model.v1 from .venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/test/fuzz/env.sh"

# fuzz_model links a tiny model compiled by build/bin/mixtral-compile; without one it is skipped.
model_args=()
if [ -x "$root/build/bin/mixtral-compile" ]; then
  python=$root/.venv/bin/python
  [ -x "$python" ] || python=python3
  model_args=(-DMOEC_COMPILER="$root/build/bin/mixtral-compile" -DMOEC_PYTHON="$python")
fi

echo "== building the ASan+UBSan runtime, its unit tests and the fuzz targets in $build ($cxx)"
cmake -S "$root/test/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DMOEC_TOKENIZER_MODEL="${MOEC_TOKENIZER_MODEL:-}" "${model_args[@]}" >/dev/null
ninja -C "$build" >/dev/null
