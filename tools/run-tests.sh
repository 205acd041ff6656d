#!/usr/bin/env bash
# Runs every test of moec: lit (dialect, passes, codegen, end to end), GoogleTest (runtime),
# and the numeric checks against the reference model and Hugging Face goldens.
# Sets up and builds first (tools/setup.sh --no-run), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh --no-run
export PATH="$PWD/.venv/bin:$PATH"
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
