#!/bin/bash
# tools/bench/gemm.sh [--baseline BUILD_DIR] [--only-swiglu] [--threads N] [--rows T] [--rounds R]
#                     [PIPELINE_OPTIONS]
#
# The float prefill GEMM alone: compiles tools/bench/gemm.mlir (x[T, K] · W[N, K]ᵀ on a
# Mixtral expert's w1 and w2 shapes, bf16 and f32 weights) with build/bin/moe-opt
# --moe-cpu-pipeline, links it with gemm-bench.cpp and OpenBLAS (Debian's libopenblas-dev)
# and prints, measured in one run: the FMA peak of N threads, each kernel's GFLOP/s and
# fraction of that peak (with AVX512-BF16, also vdpbf16ps's peak, the unit a bf16 GEMM could
# use instead), and its ratio to OpenBLAS's sgemm (f32 weights) on the same shape;
# then an expert's gate/up GEMMs with SwiGLU in the epilogue (w1, w3 in panel order) against
# the unfused GEMMs and SwiGLU pass, alternating in the same rounds. --baseline also compiles
# the fused gate/up GEMM with BUILD_DIR/bin/moe-opt (e.g. /work/main/build) and times it in
# the same rounds ("fused base"); --only-swiglu times the gate/up kernels alone.
# Extra arguments go to the pipeline (e.g. "gemm-min-rows=-1" for the dot-product kernel).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
threads=2 rows=128 rounds=5 opts="" baseline="" only=""
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --only-swiglu) only=swiglu; shift ;;
    --rows) rows=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) opts="$opts $1"; shift ;;
  esac
done
if [ ! -f /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ]; then
  echo "gemm.sh: OpenBLAS is missing: apt-get install libopenblas-dev (tools/setup.sh does)" >&2
  exit 1
fi
bin=/usr/lib/llvm-22/bin
out=$root/build/bench/gemm
mkdir -p "$out"
# The panel-order kernels take the host's GEMM panel (what `mixtral-compile --pack` stores for
# it): gemm.mlir is written for AVX2's (16 columns, 8 lanes); AVX-512's is 32 columns on 16
# lanes (gemm-bench.cpp, built with -march=native, packs its weights the same way). A panel
# the pipeline's GEMM does not take would fall to the generic loops (1% of the peak).
mlir=$out/gemm.mlir
if grep -qw avx512f /proc/cpuinfo; then
  sed -e 's/896x4096x16xbf16/448x4096x32xbf16/g' -e 's/256x14336x16xbf16/128x14336x32xbf16/g' \
      -e 's/n floordiv 16, (k mod 8) \* 512 + k floordiv 8, n mod 16/n floordiv 32, (k mod 16) * 256 + k floordiv 16, n mod 32/g' \
      -e 's/n floordiv 16, (k mod 8) \* 1792 + k floordiv 8, n mod 16/n floordiv 32, (k mod 16) * 896 + k floordiv 16, n mod 32/g' \
      -e 's/cols = 16, lanes = 8/cols = 32, lanes = 16/g' "$root/tools/bench/gemm.mlir" > "$mlir"
else
  cp "$root/tools/bench/gemm.mlir" "$mlir"
fi
"$root/build/bin/moe-opt" "$mlir" --moe-cpu-pipeline="gemm-epilogues=true${opts}" \
  | "$bin/mlir-translate" --mlir-to-llvmir -o "$out/gemm.ll"
lls=("$out/gemm.ll")
if [ -n "$baseline" ]; then # every function renamed base_* (the GEMMs inside are internal)
  sed 's/func.func @/func.func @base_/' "$mlir" \
    | "$baseline/bin/moe-opt" --moe-cpu-pipeline="gemm-epilogues=true${opts}" \
    | "$bin/mlir-translate" --mlir-to-llvmir -o "$out/base-gemm.ll"
  lls+=("$out/base-gemm.ll")
fi
blas=/usr/lib/x86_64-linux-gnu/openblas-pthread
"$bin/clang++" -O3 -march=native -w "${lls[@]}" "$root/tools/bench/gemm-bench.cpp" \
  -I/usr/include/x86_64-linux-gnu/openblas-pthread -L"$blas" -lopenblas -Wl,-rpath,"$blas" \
  -fopenmp -L"$(dirname "$bin")/lib" -Wl,-rpath,"$(dirname "$bin")/lib" -o "$out/gemm-bench"
# OpenBLAS 0.3.21 (Debian 12) picks its kernels from the CPU model, and on one it does not know
# (Emerald Rapids, model 207) falls back to Prescott's SSE3 kernels (32 GFLOP/s where its
# SkylakeX sgemm runs at ~250): the peer gets its AVX-512 kernels there unless told otherwise
# (gemm-bench prints the kernels OpenBLAS used).
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$out/gemm-bench" "$rows" "$rounds" $only
