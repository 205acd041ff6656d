// mixtral-compile --pack on a CPU stores the expert weights in the packed GEMM's panel order
// (#moe.panels, cols = 2 vectors and lanes = 1 vector of f32 for the --cpu: 16 and 8 with
// AVX2, 32 and 16 with AVX-512): the builder marks their views, the manifest names the order
// for the packer ("panels": [cols, lanes]), and the pipeline reads them through the GEMM that
// takes its panels in place (__moe_gemm_*_panels_*) and the panel GEMV. Attention weights,
// the router and the embedding stay row-major. Without --pack the manifest names the same
// order with no weights file (the loader permutes the checkpoint's experts as it copies them
// into the arena) and the views carry the same marks, so both builds run the same code; the
// GPU target marks nothing.
// REQUIRES: mixtral-compile
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --pack --cpu x86-64-v3 --emit=mlir --max-seq-len 32 -o %t.out
// RUN: FileCheck %s --check-prefix=BUILDER < %t.out
// RUN: mv %t.out %t.mlir
// RUN: moe-opt %t.mlir --moe-cpu-pipeline="cpu=x86-64-v3 gemm-epilogues=true" | FileCheck %s --check-prefix=LOWERED
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --pack --cpu skylake-avx512 --emit=mlir --max-seq-len 32 -o %t.out
// RUN: FileCheck %s --check-prefix=AVX512 < %t.out
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --cpu x86-64-v3 --emit=mlir --max-seq-len 32 -o %t.out
// RUN: FileCheck %s --check-prefix=UNPACKED < %t.out
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --target nvptx --gpu sm_80 --emit=mlir --max-seq-len 32 -o %t.out
// RUN: FileCheck %s --check-prefix=GPU < %t.out

// BUILDER:         \22panels\22:[16,8]
// BUILDER-LABEL: func.func @moec_prefill
// BUILDER-NOT:     moe.panels
// BUILDER:         scf.for
// BUILDER:           memref.view {{.*}} {moe.panels = #moe.panels<cols = 16, lanes = 8>} : memref<{{.*}}xi8> to memref<4x96x64xf32>
// BUILDER:           memref.view {{.*}} {moe.panels = #moe.panels<cols = 16, lanes = 8>} : memref<{{.*}}xi8> to memref<4x96x64xf32>
// BUILDER:           memref.view {{.*}} {moe.panels = #moe.panels<cols = 16, lanes = 8>} : memref<{{.*}}xi8> to memref<4x64x96xf32>
// BUILDER:           moe.sparse_block

// The experts' gate/up GEMMs with SwiGLU in the epilogue: one function for all the module's
// entry points.
// LOWERED-NOT: @__moe_gemm_swiglu_f32_f32_f32_panels_6x16_
// LOWERED: llvm.func internal @__moe_gemm_swiglu_f32_f32_f32_panels_6x16(
// LOWERED-NOT: @__moe_gemm_swiglu_f32_f32_f32_panels_6x16_
// LOWERED: llvm.func internal @__moe_gemm_f32_f32_panels_6x16(
// LOWERED-NOT: @__moe_gemm_swiglu_f32_f32_f32_panels_6x16_

// AVX512: memref.view {{.*}} {moe.panels = #moe.panels<cols = 32, lanes = 16>} : memref<{{.*}}xi8> to memref<4x96x64xf32>

// UNPACKED-NOT:   weights_file
// UNPACKED:       \22panels\22:[16,8]
// UNPACKED-NOT:   weights_file
// UNPACKED-LABEL: func.func @moec_prefill
// UNPACKED:         memref.view {{.*}} {moe.panels = #moe.panels<cols = 16, lanes = 8>} : memref<{{.*}}xi8> to memref<4x96x64xf32>

// GPU-NOT: \22panels\22
// GPU-NOT: moe.panels
