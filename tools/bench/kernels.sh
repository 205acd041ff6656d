#!/bin/bash
# tools/bench/kernels.sh [--cpu NAME] [--threads N] [PIPELINE_OPTIONS]
#
# The weight kernels alone: compiles tools/bench/kernels.mlir (x · Wᵀ with W [14336, 4096],
# an expert's w1, in bf16, q8 and q4) with build/bin/moe-opt --moe-cpu-pipeline, links it
# with kernels-bench.cpp and prints, measured in one run: the read bandwidth, each format's
# decode GEMV time and its share of the bandwidth roofline over the bytes it must read
# (data + scales), and a 128-row prefill GEMM's GFLOP/s. q8 and q4 run twice: float
# dequantisation (the default) and int8 activations ("i8x", int8-activations=true). Extra arguments go to the pipeline
# (e.g. "vector-width=8 tile-cols=4").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
threads=2 opts=""
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) opts="$opts $1"; shift ;;
  esac
done
bin=/usr/lib/llvm-22/bin
out=$root/build/bench/kernels
mkdir -p "$out"
"$root/build/bin/moe-opt" "$root/tools/bench/kernels.mlir" --moe-cpu-pipeline="${opts# }" \
  | "$bin/mlir-translate" --mlir-to-llvmir -o "$out/kernels.ll"
# The same kernels with int8 activations, renamed int8_linear_*.
sed 's/@linear_/@int8_linear_/' "$root/tools/bench/kernels.mlir" \
  | "$root/build/bin/moe-opt" --moe-cpu-pipeline="${opts# } int8-activations=true" \
  | "$bin/mlir-translate" --mlir-to-llvmir -o "$out/kernels-int8.ll"
"$bin/clang++" -O3 -march=native -w "$out/kernels.ll" "$out/kernels-int8.ll" \
  "$root/tools/bench/kernels-bench.cpp" \
  -fopenmp -L"$(dirname "$bin")/lib" -Wl,-rpath,"$(dirname "$bin")/lib" -o "$out/kernels-bench"
OMP_NUM_THREADS=$threads "$out/kernels-bench"
