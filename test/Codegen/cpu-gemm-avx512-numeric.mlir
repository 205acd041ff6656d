// The packed GEMM with the host's AVX-512 kernel (16 lanes, 12x32 microkernel, chosen from the
// CPU's features), checked by Inputs/gemm-harness.cpp as in cpu-gemm-numeric.mlir.
// UNSUPPORTED where the host lacks AVX-512F (there cpu-gemm-numeric.mlir runs the same IR
// shape split into AVX2 halves).
// REQUIRES: cpu-codegen-link, host-avx512f
// RUN: moe-opt %S/Inputs/gemm.mlir --moe-cpu-pipeline | mlir-translate --mlir-to-llvmir -o %t.ll
// RUN: %clangxx -O2 -march=native -w %t.ll %S/Inputs/gemm-harness.cpp %omp_link -o %t.exe
// RUN: env OMP_NUM_THREADS=2 %t.exe | FileCheck %s
// RUN: FileCheck %s --check-prefix=WIDE --input-file=%t.ll
// WIDE: fmuladd{{.*}}<16 x float>

// CHECK-NOT: FAIL
// CHECK-DAG: PASS linear (bf16, N=96, K=256) T=13
// CHECK-DAG: PASS linear (bf16, N=96, K=256) T=64
// CHECK-DAG: PASS grouped_matmul (bf16, experts of T/2, 0, T/4, rest) T=64
// CHECK: ALL PASSED
