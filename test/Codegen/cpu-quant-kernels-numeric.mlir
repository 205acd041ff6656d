// Numeric check of the quantized-weight kernels (q8, q4, f8e4m3): Inputs/quant-kernels.mlir
// goes through moe-cpu-pipeline, LLVM IR and clang into an object that
// Inputs/quant-kernels-harness.cpp calls with T = 1, 5 and 17 tokens and compares with plain
// C++ loops over weights it dequantises itself (4e-6 relative, as cpu-kernels-numeric.mlir).
// Run with the default kernel shape and with AVX2's (8 lanes, 3x2 tiles, serial).
// REQUIRES: cpu-codegen-link
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline | mlir-translate --mlir-to-llvmir -o %t.ll
// RUN: %clangxx -O2 -march=native -w %t.ll %S/Inputs/quant-kernels-harness.cpp %omp_link -o %t.exe
// RUN: env OMP_NUM_THREADS=2 %t.exe | FileCheck %s
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="openmp=false vector-width=8 tile-rows=3 tile-cols=2" | mlir-translate --mlir-to-llvmir -o %t.serial.ll
// RUN: %clangxx -O2 -march=native -w %t.serial.ll %S/Inputs/quant-kernels-harness.cpp %omp_link -o %t.serial.exe
// RUN: %t.serial.exe | FileCheck %s

// CHECK-NOT: FAIL
// CHECK-DAG: PASS linear q8 (N=13, K=96) T=1
// CHECK-DAG: PASS linear q8 (N=13, K=96) T=17
// CHECK-DAG: PASS linear q4 (N=13, K=96) T=1
// CHECK-DAG: PASS linear q4 (N=13, K=96) T=17
// CHECK-DAG: PASS linear f8e4m3 (N=13, K=40) T=1
// CHECK-DAG: PASS linear f8e4m3 (N=13, K=40) T=17
// CHECK-DAG: PASS grouped_matmul q4 (empty experts, N=13, K=64) T=34
// CHECK-DAG: PASS sparse_block q8 T=1
// CHECK-DAG: PASS sparse_block q8 T=17
// CHECK-DAG: PASS sparse_block decode q4 (static T=1)
// CHECK: ALL PASSED
