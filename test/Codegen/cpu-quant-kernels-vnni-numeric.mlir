// cpu-quant-kernels-numeric.mlir's int8-activation build on vpdpbusd (the host's CPU has
// AVX-VNNI or AVX512-VNNI; elsewhere UNSUPPORTED): the same independent reference, the same
// 4e-6 on the linear kernels and the same bit-for-bit row invariance as the AVX2 build.
// REQUIRES: cpu-codegen-link, host-vnni
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="int8-activations=true" -o %t.mlir
// RUN: FileCheck %s --check-prefix=IR < %t.mlir
// RUN: mlir-translate --mlir-to-llvmir %t.mlir -o %t.ll
// RUN: %clangxx -O2 -march=native -w %t.ll %S/Inputs/quant-kernels-harness.cpp %omp_link -o %t.exe
// RUN: env OMP_NUM_THREADS=2 %t.exe 1 | FileCheck %s

// IR: llvm.x86.avx512.vpdpbusd.256
// CHECK-NOT: FAIL
// CHECK-DAG: PASS linear q8 (N=13, K=96) T=17
// CHECK-DAG: PASS linear q4 (N=13, K=96) T=17
// CHECK-DAG: PASS linear q8 rows invariant T=17
// CHECK-DAG: PASS linear q4 rows invariant T=17
// CHECK-DAG: PASS grouped_matmul q4 (empty experts, N=13, K=64) T=34
// CHECK-DAG: PASS sparse_block q8 T=17
// CHECK-DAG: PASS sparse_block decode q4 (static T=1)
// CHECK: ALL PASSED
