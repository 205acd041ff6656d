#!/bin/bash
# tools/bench/kernels.sh [--baseline BUILD_DIR] [--threads N] [--rows T] [--alternate R]
#                        [--gemv R] [--decode R] [PIPELINE_OPTIONS]
#
# The weight kernels alone: compiles tools/bench/kernels.mlir (x · Wᵀ with W [14336, 4096],
# an expert's w1, in bf16 and q8 (row-major and in panel order) and q4) with build/bin/moe-opt
# --moe-cpu-pipeline, links it with kernels-bench.cpp and prints, measured in one run: the
# read bandwidth (best of 7 passes on 2 MiB pages, as OUT --bench), each format's decode GEMV
# time and its share of the bandwidth roofline over the bytes it must read (data + scales;
# weights rotating over 512 MiB, so from memory, and on one matrix, partly from the L3), and
# a T-row prefill GEMM's GFLOP/s (T = 128 unless --rows; 32 is an expert's share of a
# 128-token prompt), also per CPU-second as a ratio to the bf16 panels GEMM (what a bf16
# model runs; --alternate R: GEMMs only, R rounds each calling every kernel once in turn, the
# median of the per-round CPU-time ratios: what to trust on a loaded machine; --gemv R: the
# same rounds with the decode GEMVs only, 8 calls each per round; --decode R: the
# bf16 decode GEMVs only (expert w1 in panel order and row-major, w2 [4096, 14336] in panel
# order, an attention projection [4096, 4096], the lm_head [32000, 4096]), R rounds, each
# probing the bandwidth and calling the baseline's and this build's GEMVs one after the
# other: medians of GB/s, of the share of the round's probe and of the per-round base/new
# time ratio). q8 and q4 run twice: float dequantisation and int8 activations ("i8x",
# int8-activations=true). --baseline also compiles the same kernels with
# BUILD_DIR/bin/moe-opt (e.g. /work/main/build) and times them in the same run ("base"
# rows). Extra arguments go to the pipeline (e.g. "vector-width=8 tile-cols=4").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
threads=2 rows=128 opts="" baseline="" alternate="" gemv="" decode=""
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --alternate) alternate=$2; shift 2 ;;
    --gemv) alternate=$2; gemv=gemv; shift 2 ;;
    --decode) decode=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) opts="$opts $1"; shift ;;
  esac
done
bin=/usr/lib/llvm-22/bin
out=$root/build/bench/kernels
mkdir -p "$out"
# kernels.mlir through MOE_OPT with extra pipeline options, functions renamed PREFIX*.
# A baseline whose moe-opt does not know q8 in panel order leaves that kernel as scalar
# loops: it is renamed out of the benchmark's way instead of timed.
compile() { # MOE_OPT PREFIX OPTIONS OUT.ll
  sed "s/@linear_/@$2linear_/" "$root/tools/bench/kernels.mlir" \
    | "$1" --moe-cpu-pipeline="${opts# } $3" -o "$4.mlir"
  if [ -n "$2" ] && ! grep -q "__moe_qgemm_q8_panels" "$4.mlir"; then
    sed -i "s/@$2linear_q8_panels\b/@unknown_$2linear_q8_panels/" "$4.mlir"
  fi
  "$bin/mlir-translate" --mlir-to-llvmir "$4.mlir" -o "$4"
}
lls=()
for build in "$root/build" ${baseline:+"$baseline"}; do
  prefix=""
  [ "$build" = "$root/build" ] || prefix=base_
  compile "$build/bin/moe-opt" "$prefix" "int8-activations=false" "$out/${prefix}kernels.ll"
  compile "$build/bin/moe-opt" "${prefix}int8_" "int8-activations=true" "$out/${prefix}kernels-int8.ll"
  lls+=("$out/${prefix}kernels.ll" "$out/${prefix}kernels-int8.ll")
done
"$bin/clang++" -O3 -march=native -w "${lls[@]}" "$root/tools/bench/kernels-bench.cpp" \
  -fopenmp -L"$(dirname "$bin")/lib" -Wl,-rpath,"$(dirname "$bin")/lib" -o "$out/kernels-bench"
uptime
if [ -n "$decode" ]; then
  OMP_NUM_THREADS=$threads "$out/kernels-bench" "$rows" 0 "$decode"
else
  OMP_NUM_THREADS=$threads "$out/kernels-bench" "$rows" $alternate $gemv
fi
