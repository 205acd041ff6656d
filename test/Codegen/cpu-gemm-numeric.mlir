// Numeric check of the packed GEMM of moe-cpu-vectorize-matmul (and of the dot-product kernel
// it falls back to below gemm-min-rows): Inputs/gemm.mlir goes through moe-cpu-pipeline, LLVM
// IR and clang into an object that Inputs/gemm-harness.cpp calls with 1 to 64 rows, checking
// each result against x · wᵀ in double (4e-6 relative) and each row against the same row
// computed alone, bit for bit (batch invariance). Builds: the host's kernel (AVX2 here: 6x16
// microkernel); the AVX-512 shape (16 lanes, 12x32) serial, which LLVM splits into AVX2
// halves on a host without AVX-512 (the IR's numerics; cpu-gemm-avx512-numeric.mlir runs it
// natively); a 4x24 AVX2 shape with 2 threads.
// REQUIRES: cpu-codegen-link
// RUN: moe-opt %S/Inputs/gemm.mlir --moe-cpu-pipeline="gemm-epilogues=true" | mlir-translate --mlir-to-llvmir -o %t.ll
// RUN: %clangxx -O2 -march=native -w %t.ll %S/Inputs/gemm-harness.cpp %omp_link -o %t.exe
// RUN: env OMP_NUM_THREADS=2 %t.exe | FileCheck %s
// RUN: moe-opt %S/Inputs/gemm.mlir --moe-cpu-pipeline="openmp=false vector-width=16 gemm-rows=12 gemm-cols=32" | mlir-translate --mlir-to-llvmir -o %t.w16.ll
// RUN: %clangxx -O2 -march=native -w %t.w16.ll %S/Inputs/gemm-harness.cpp %omp_link -o %t.w16.exe
// RUN: %t.w16.exe | FileCheck %s
// RUN: moe-opt %S/Inputs/gemm.mlir --moe-cpu-pipeline="vector-width=8 gemm-rows=4 gemm-cols=24" | mlir-translate --mlir-to-llvmir -o %t.4x24.ll
// RUN: %clangxx -O2 -march=native -w %t.4x24.ll %S/Inputs/gemm-harness.cpp %omp_link -o %t.4x24.exe
// RUN: env OMP_NUM_THREADS=2 %t.4x24.exe | FileCheck %s
// The AVX2 kernel (6x16, the panel order of gemm.mlir's #moe.panels) on any host, serial,
// with bf16 panels widened in registers (even and odd columns) and, below, once per panel
// into an f32 scratch (gemm-widen-panels, the default on Zen 1).
// RUN: moe-opt %S/Inputs/gemm.mlir --moe-cpu-pipeline="openmp=false vector-width=8 gemm-widen-panels=false" | mlir-translate --mlir-to-llvmir -o %t.w8.ll
// RUN: %clangxx -O2 -march=native -w %t.w8.ll %S/Inputs/gemm-harness.cpp %omp_link -o %t.w8.exe
// RUN: %t.w8.exe | FileCheck %s --check-prefixes=CHECK,BITS
// RUN: moe-opt %S/Inputs/gemm.mlir --moe-cpu-pipeline="openmp=false vector-width=8 gemm-widen-panels=true" | mlir-translate --mlir-to-llvmir -o %t.widen.ll
// RUN: %clangxx -O2 -march=native -w %t.widen.ll %S/Inputs/gemm-harness.cpp %omp_link -o %t.widen.exe
// RUN: %t.widen.exe | FileCheck %s --check-prefixes=CHECK,BITS
// A CPU with AVX-512 gets 16-lane FMAs by default (the pipeline reads --cpu's features).
// RUN: moe-opt %S/Inputs/gemm.mlir --moe-cpu-pipeline="cpu=skylake-avx512" | FileCheck %s --check-prefix=AVX512
// AVX512: llvm.intr.fmuladd({{.*}}) : (vector<16xf32>, vector<16xf32>, vector<16xf32>) -> vector<16xf32>

// CHECK-NOT: FAIL
// CHECK-DAG: PASS linear (bf16, N=96, K=256) T=1
// CHECK-DAG: PASS linear (bf16, N=96, K=256) T=8
// CHECK-DAG: PASS linear (bf16, N=96, K=256) T=13
// CHECK-DAG: PASS linear (bf16, N=96, K=256) T=64
// CHECK-DAG: PASS linear (f32, N=64, K=80) T=5
// CHECK-DAG: PASS linear (f32, N=64, K=80) T=31
// CHECK-DAG: PASS linear (f16, N=32, K=48) T=64
// CHECK-DAG: PASS grouped_matmul (bf16, experts of T/2, 0, T/4, rest) T=16
// CHECK-DAG: PASS grouped_matmul (bf16, experts of T/2, 0, T/4, rest) T=41
// CHECK-DAG: PASS grouped_matmul (bf16, experts of T/2, 0, T/4, rest) T=64
// CHECK-DAG: PASS grouped_matmul (bf16 in panel order) T=4
// CHECK-DAG: PASS grouped_matmul (bf16 in panel order) T=16
// CHECK-DAG: PASS grouped_matmul (bf16 in panel order) T=64
// CHECK-DAG: PASS grouped_swiglu (bf16, experts of T/2, 0, T/4, rest) T=16
// CHECK-DAG: PASS grouped_swiglu (bf16, experts of T/2, 0, T/4, rest) T=64
// CHECK-DAG: PASS grouped_swiglu (bf16 in panel order) T=4
// CHECK-DAG: PASS grouped_swiglu (bf16 in panel order) T=16
// CHECK-DAG: PASS grouped_swiglu (bf16 in panel order) T=32
// CHECK-DAG: PASS grouped_swiglu (bf16 in panel order) T=41
// CHECK-DAG: PASS grouped_swiglu (bf16 in panel order) T=64
// Weights in panel order (#moe.panels<cols = 16, lanes = 8>, the AVX2 kernel's panel) give
// the row-major kernels' bits, below (GEMV) and above (GEMM) gemm-min-rows; the other
// shapes read them through the generic loops (correct, not the same bits).
// BITS-DAG: SAME BITS panel order and row-major T=4
// BITS-DAG: SAME BITS panel order and row-major T=16
// BITS-DAG: SAME BITS panel order and row-major T=41
// BITS-DAG: SAME BITS panel order and row-major T=64
// moe.grouped_swiglu over w1/w3 in panel order: from 8 rows one GEMM with SwiGLU in its
// epilogue, the bits of the two row-major GEMMs and the elementwise SwiGLU (and, by the
// PASS lines' invariance check, of each row alone: two panel GEMVs and the SwiGLU).
// BITS-DAG: SAME BITS swiglu panel order and row-major T=4
// BITS-DAG: SAME BITS swiglu panel order and row-major T=16
// BITS-DAG: SAME BITS swiglu panel order and row-major T=32
// BITS-DAG: SAME BITS swiglu panel order and row-major T=41
// BITS-DAG: SAME BITS swiglu panel order and row-major T=64
// CHECK: ALL PASSED
