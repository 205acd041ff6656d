#!/usr/bin/env bash
# layer-report.sh — per-kernel figures of the Mixtral-shaped layer in the PTX interpreter,
# before and after: launches per prefill and per decode token, global bytes loaded against
# the ideal (distinct 32-byte sectors: each byte once), ptxas -arch=sm_90 -v registers and
# spills, and the interpreter's wall/CPU time (layer_report.py does the work; README.md).
#
# Usage: test/gpu-emu/layer-report.sh COMPILER [--baseline OLD_COMPILER] [--ptxemu LIB]
#            [--baseline-ptxemu OLD_LIB] [--workdir DIR] [-P 12] [-D 2]
#   COMPILER and LIB (default: the .so beside COMPILER's build) are "after"; a baseline
#   compiler and/or interpreter adds a "before" column (the other half defaults to "after"'s).
#   DIR (default build/mixtral-layer) holds the ~2.8 GB checkpoint, shared with the ctest.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
compiler=${1:?usage: layer-report.sh COMPILER [--baseline OLD_COMPILER] [--ptxemu LIB] [--baseline-ptxemu OLD_LIB]}
shift
lib=$(dirname "$compiler")/../test/gpu-emu/libmoec_ptxemu.so
args=() inputs=("$compiler")
while (($#)); do
  case $1 in
    --baseline) args+=(--baseline-compiler "${2:?--baseline needs a compiler}"); inputs+=("$2"); shift 2 ;;
    --ptxemu) lib=${2:?--ptxemu needs a library}; shift 2 ;;
    --baseline-ptxemu) args+=(--baseline-ptxemu "${2:?--baseline-ptxemu needs a library}"); inputs+=("$2"); shift 2 ;;
    --workdir|-P|-D) args+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    *) echo "layer-report.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ " ${args[*]} " == *" --workdir "* ]] || args+=(--workdir "$src/build/mixtral-layer")
for f in "${inputs[@]}" "$lib"; do
  [ -e "$f" ] || { echo "layer-report.sh: $f does not exist" >&2; exit 1; }
done
py="$src/.venv/bin/python"; [ -x "$py" ] || py=python3
exec "$py" "$src/test/gpu-emu/layer_report.py" --compiler "$compiler" --ptxemu "$lib" "${args[@]}"
