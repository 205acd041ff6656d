// Numeric check of the quantized-weight kernels (q8, q4, f8e4m3): Inputs/quant-kernels.mlir
// goes through moe-cpu-pipeline, LLVM IR and clang into an object that
// Inputs/quant-kernels-harness.cpp calls with T = 1, 5 and 17 tokens and compares with plain
// C++ loops over weights it dequantises itself (4e-6 relative, as cpu-kernels-numeric.mlir);
// with N = 32 and T = 17 the float builds take the packed GEMM (dequantised panels; K = 96
// and K = 544). q8 in panel order (#moe.panels) runs in the float builds (its GEMM at T = 17,
// its panel GEMV below); the two AVX2-shaped ones ("panels") also check its every output
// bit for bit against the row-major q8 kernel's.
// Five builds: the pipeline's default (q8 float, q4 on int8 activations: the harness's
// argument 2); float dequantisation with the host's kernel shape; float dequantisation,
// serial, AVX2's shape; and int8 activations (AVX2 integer dot products) for every q8/q4
// row (argument 1) on 2 groups per step (q4-octets=false), once more with q4-octets, the
// pipeline's default (the K = 256 q4 linear takes 8 groups per step). Where a format takes int8 activations the harness quantizes the
// activations as the kernel does, and the whole block is held to 2e-3 of the float
// reference. Each build also checks that every row
// of a T-row call equals that row computed alone, bit for bit (row invariance).
// cpu-quant-kernels-vnni.mlir runs the int8 build on vpdpbusd where the host has VNNI.
// REQUIRES: cpu-codegen-link
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline | mlir-translate --mlir-to-llvmir -o %t.default.ll
// RUN: %clangxx -O2 -march=native -w %t.default.ll %S/Inputs/quant-kernels-harness.cpp %omp_link -o %t.default.exe
// RUN: env OMP_NUM_THREADS=2 %t.default.exe 2 | FileCheck %s --check-prefixes=CHECK,FLOAT
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="int8-activations=false" | mlir-translate --mlir-to-llvmir -o %t.ll
// RUN: %clangxx -O2 -march=native -w %t.ll %S/Inputs/quant-kernels-harness.cpp %omp_link -o %t.exe
// RUN: env OMP_NUM_THREADS=2 %t.exe 0 | FileCheck %s --check-prefixes=CHECK,FLOAT
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="openmp=false vector-width=8 tile-rows=3 tile-cols=2 int8-activations=false" | mlir-translate --mlir-to-llvmir -o %t.serial.ll
// RUN: %clangxx -O2 -march=native -w %t.serial.ll %S/Inputs/quant-kernels-harness.cpp %omp_link -o %t.serial.exe
// RUN: %t.serial.exe 0 panels | FileCheck %s --check-prefixes=CHECK,FLOAT,PANELS
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="vector-width=8 int8-activations=false" | mlir-translate --mlir-to-llvmir -o %t.avx2.ll
// RUN: %clangxx -O2 -march=native -w %t.avx2.ll %S/Inputs/quant-kernels-harness.cpp %omp_link -o %t.avx2.exe
// RUN: env OMP_NUM_THREADS=2 %t.avx2.exe 0 panels | FileCheck %s --check-prefixes=CHECK,FLOAT,PANELS
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="vector-width=8 tile-rows=3 tile-cols=4 int8-activations=true q4-octets=false" | mlir-translate --mlir-to-llvmir -o %t.int8.ll
// RUN: %clangxx -O2 -march=native -w %t.int8.ll %S/Inputs/quant-kernels-harness.cpp %omp_link -o %t.int8.exe
// RUN: env OMP_NUM_THREADS=2 %t.int8.exe 1 | FileCheck %s
// RUN: moe-opt %S/Inputs/quant-kernels.mlir --moe-cpu-pipeline="int8-activations=true q4-octets=true" | mlir-translate --mlir-to-llvmir -o %t.octets.ll
// RUN: %clangxx -O2 -march=native -w %t.octets.ll %S/Inputs/quant-kernels-harness.cpp %omp_link -o %t.octets.exe
// RUN: env OMP_NUM_THREADS=2 %t.octets.exe 1 | FileCheck %s

// CHECK-NOT: FAIL
// CHECK-DAG: PASS linear q8 (N=13, K=96) T=1
// CHECK-DAG: PASS linear q8 (N=13, K=96) T=17
// CHECK-DAG: PASS linear q4 (N=13, K=96) T=1
// CHECK-DAG: PASS linear q4 (N=13, K=96) T=17
// CHECK-DAG: PASS linear q8 rows invariant T=17
// CHECK-DAG: PASS linear q4 rows invariant T=17
// CHECK-DAG: PASS linear q4 (N=13, K=256) T=1
// CHECK-DAG: PASS linear q4 (K=256) rows invariant T=17
// CHECK-DAG: PASS linear q8 (N=32, K=96) T=17
// CHECK-DAG: PASS linear q4 (N=32, K=96) T=17
// CHECK-DAG: PASS linear q8 (N=32) rows invariant T=17
// CHECK-DAG: PASS linear q4 (N=32) rows invariant T=17
// CHECK-DAG: PASS linear q8 (N=32, K=544) T=17
// CHECK-DAG: PASS linear q4 (N=32, K=544) T=17
// CHECK-DAG: PASS linear q8 (K=544) rows invariant T=17
// CHECK-DAG: PASS linear q4 (K=544) rows invariant T=17
// CHECK-DAG: PASS linear f8e4m3 (N=13, K=40) T=1
// CHECK-DAG: PASS linear f8e4m3 (N=13, K=40) T=17
// CHECK-DAG: PASS grouped_matmul q4 (empty experts, N=13, K=64) T=34
// CHECK-DAG: PASS sparse_block q8 T=1
// CHECK-DAG: PASS sparse_block q8 T=17
// CHECK-DAG: PASS sparse_block decode q4 (static T=1)
// FLOAT-DAG: PASS linear q8 panels (N=32, K=96) T=1
// FLOAT-DAG: PASS linear q8 panels (N=32, K=96) T=17
// FLOAT-DAG: PASS linear q8 panels (N=32, K=544) T=5
// FLOAT-DAG: PASS linear q8 panels (N=32, K=544) T=17
// FLOAT-DAG: PASS linear q8 panels (N=32, K=96) rows invariant T=17
// FLOAT-DAG: PASS linear q8 panels (N=32, K=544) rows invariant T=17
// PANELS-DAG: PASS linear q8 panels (N=32, K=96) bits as row-major q8 T=5
// PANELS-DAG: PASS linear q8 panels (N=32, K=96) bits as row-major q8 T=17
// PANELS-DAG: PASS linear q8 panels (N=32, K=544) bits as row-major q8 T=17
// CHECK: ALL PASSED
