// Numeric check of every lowered kernel: Inputs/kernels.mlir goes through moe-cpu-pipeline,
// LLVM IR and clang into an object that Inputs/kernels-harness.cpp calls with T = 1, 5 and
// 17 tokens and compares with plain C++ loops (4e-6 relative: ~10x the worst measured error,
// which each PASS line prints; inputs where every term matters, e.g. RMSNorm eps).
// REQUIRES: cpu-codegen-link
// RUN: moe-opt %S/Inputs/kernels.mlir --moe-cpu-pipeline | mlir-translate --mlir-to-llvmir -o %t.ll
// RUN: %clangxx -O2 -march=native -w %t.ll %S/Inputs/kernels-harness.cpp %omp_link -o %t.exe
// RUN: env OMP_NUM_THREADS=2 %t.exe | FileCheck %s
// RUN: moe-opt %S/Inputs/kernels.mlir --moe-cpu-pipeline="openmp=false vector-width=8 tile-rows=3 tile-cols=2" | mlir-translate --mlir-to-llvmir -o %t.serial.ll
// RUN: %clangxx -O2 -march=native -w %t.serial.ll %S/Inputs/kernels-harness.cpp %omp_link -o %t.serial.exe
// RUN: %t.serial.exe | FileCheck %s

// CHECK-NOT: FAIL
// CHECK-DAG: PASS router T=17
// CHECK-DAG: PASS top_k_gating (ties) T=5
// CHECK-DAG: PASS top_k_gating (NaN, inf) T=1
// CHECK-DAG: PASS top_k_gating (NaN, inf) T=17
// CHECK-DAG: PASS dispatch (ids outside [0, E)) T=17
// CHECK-DAG: PASS dispatch T=17
// CHECK-DAG: PASS grouped_matmul (empty experts, N=13, K=37) T=34
// CHECK-DAG: PASS combine T=17
// CHECK-DAG: PASS sparse_block (bf16) T=1
// CHECK-DAG: PASS sparse_block (bf16) T=5
// CHECK-DAG: PASS sparse_block (bf16) T=17
// CHECK-DAG: PASS sparse_block decode (static T=1)
// CHECK-DAG: PASS rms_norm (bf16 weight) T=17
// CHECK-DAG: PASS linear (f16 weight) T=17
// CHECK-DAG: PASS rope (start=11) T=17
// CHECK-DAG: PASS attention (GQA 2:1, start=7) T=17
// CHECK-DAG: PASS attention (GQA 2:1, window 6, start=7) T=17
// CHECK-DAG: PASS attention rows = one-row calls at their positions, bit for bit T=17
// CHECK: ALL PASSED
