// The quantized model's IR at each stage, from mixtral-compile --quantize: the builder marks
// the views of the weights the layout quantizes (attention wq/wk/wv/wo, experts w1/w3/w2;
// never the embedding, norms, router gate or lm_head); moe-quantize-weights turns them into
// data + scales read by moe.linear and moe.sparse_block; moe-opt's pipeline reproduces
// mixtral-compile's LLVM IR, with q4's default int8 activations (integer dot products) and
// with --int8-activations=false (the pipeline's int8-activations=false: weights dequantised
// to f32, no integer dot product); --target nvptx lowers them to the quantized GPU kernels
// (test/Codegen/GPU/moe-gpu-lower-kernel-calls-quantized.mlir) but refuses --int8-activations.
// REQUIRES: mixtral-compile
// Both emits name the same OUT, as the manifest names the packed file OUT.weights.
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --quantize q4 --emit=mlir --max-seq-len 32 -o %t.out
// RUN: mv %t.out %t.mlir
// RUN: FileCheck %s --check-prefix=BUILDER < %t.mlir
// RUN: moe-opt %t.mlir --moe-quantize-weights | FileCheck %s --check-prefix=QUANT
// RUN: moe-opt %t.mlir --moe-cpu-pipeline | mlir-translate --mlir-to-llvmir | grep -v -e '^; ModuleID' -e '^source_filename' > %t.opt.ll
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --quantize q4 --emit=llvm --max-seq-len 32 -o %t.out
// RUN: grep -v -e '^; ModuleID' -e '^source_filename' %t.out > %t.compile.ll
// RUN: diff %t.opt.ll %t.compile.ll
// RUN: FileCheck %s --check-prefix=LLVM < %t.compile.ll
// RUN: moe-opt %t.mlir --moe-cpu-pipeline="int8-activations=false" | mlir-translate --mlir-to-llvmir | grep -v -e '^; ModuleID' -e '^source_filename' > %t.opt-f32.ll
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --quantize q4 --int8-activations=false --emit=llvm --max-seq-len 32 -o %t.out
// RUN: grep -v -e '^; ModuleID' -e '^source_filename' %t.out > %t.compile-f32.ll
// RUN: diff %t.opt-f32.ll %t.compile-f32.ll
// RUN: FileCheck %s --check-prefix=LLVM-F32 < %t.compile-f32.ll
// RUN: not grep -e llvm.x86.avx2.pmadd.ub.sw -e llvm.x86.avx512.vpdpbusd %t.compile-f32.ll
// RUN: not grep __moe_qgemm_q4_ %t.compile.ll
// RUN: not mixtral-compile %S/../goldens/mixtral_e4k2_f32 --quantize q8 --int8-activations --target nvptx -o %t.gpu 2>&1 | FileCheck %s --check-prefix=GPU
// q8 (f32 activations) on a CPU: the experts' views are also marked #moe.panels (the
// manifest names "panels" for them: codes and scales in the packed file in panel order);
// moe-quantize-weights keeps the mark on both the data and the scale views; moe-lower-to-linalg
// reads them through a generic whose maps are the panel order (code [n floordiv 16, (k mod 8)
// * (K / 8) + k floordiv 8, n mod 16], scale [n floordiv 16, k floordiv 32, n mod 16]); the
// pipeline makes that the shared __moe_qgemm_q8_panels_6x16 (and the panel GEMV), beside the
// row-major __moe_qgemm_q8_6x16 of the attention projections. --int8-activations keeps the
// experts row-major.
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --quantize q8 --cpu x86-64-v3 --emit=mlir --max-seq-len 32 -o %t.q8
// RUN: FileCheck %s --check-prefix=Q8 < %t.q8
// RUN: moe-opt %t.q8 --moe-quantize-weights | FileCheck %s --check-prefix=Q8-QUANT
// RUN: moe-opt %t.q8 --moe-middle-end --moe-lower-to-linalg | FileCheck %s --check-prefix=Q8-LINALG
// RUN: moe-opt %t.q8 --moe-cpu-pipeline="cpu=x86-64-v3" | FileCheck %s --check-prefix=Q8-LOWERED
// RUN: mixtral-compile %S/../goldens/mixtral_e4k2_f32 --quantize q8 --int8-activations --cpu x86-64-v3 --emit=mlir --max-seq-len 32 -o %t.q8i8
// RUN: not grep moe.panels %t.q8i8

// BUILDER-LABEL: func.func @moec_prefill
// BUILDER:         memref.view {{.*}} to memref<512x64xf32>
// BUILDER-NOT:     moe.quant
// BUILDER:         scf.for
// BUILDER:           memref.view {{.*}} {moe.quant = #moe.quant<q4, group_size = 32>, moe.scale_offset = {{[0-9]+}} : i64} {{.*}} to memref<64x64xf32>
// BUILDER:           moe.linear
// BUILDER:           memref.view {{.*}} to memref<4x64xf32>
// BUILDER-NEXT:      bufferization.to_tensor
// BUILDER:           memref.view {{.*}} {moe.quant = #moe.quant<q4, group_size = 32>, {{.*}} to memref<4x96x64xf32>
// BUILDER:           memref.view {{.*}} {moe.quant = #moe.quant<q4, group_size = 32>, {{.*}} to memref<4x64x96xf32>
// BUILDER:           moe.sparse_block

// QUANT-LABEL: func.func @moec_prefill
// QUANT-NOT:     moe.quant =
// QUANT:         moe.linear %{{.*}}, %{{.*}} scales %{{.*}} {quant = #moe.quant<q4, group_size = 32>} : (tensor<?x64xf32>, tensor<64x32xi8>, tensor<64x2xf16>) -> tensor<?x64xf32>
// QUANT:         moe.sparse_block {{.*}} scales {{.*}} {k = 2 : i64, quant = #moe.quant<q4, group_size = 32>} : (tensor<?x64xf32>, tensor<4x64xf32>, tensor<4x96x32xi8>, tensor<4x96x32xi8>, tensor<4x64x48xi8>, tensor<4x96x2xf16>, tensor<4x96x2xf16>, tensor<4x64x3xf16>)
// QUANT:         moe.linear %{{.*}}, %{{.*}} : (tensor<1x64xf32>, tensor<512x64xf32>) -> tensor<1x512xf32>
// QUANT-LABEL: func.func @moec_decode

// The entry points, the manifest naming the q4 tensors, and int8 dot products (AVX2's
// vpmaddubsw, or vpdpbusd where the host has VNNI).
// LLVM-DAG: define void @moec_decode(
// LLVM-DAG: @moec_manifest = constant {{.*}}\22q4\22
// LLVM-DAG: call {{.*}} @{{llvm.x86.avx2.pmadd.ub.sw|llvm.x86.avx512.vpdpbusd.256}}(

// f32 activations: prefill through the packed GEMM of dequantised panels (int8 activations
// never take it), and no integer dot product anywhere.
// LLVM-F32: define internal void @__moe_qgemm_q4_

// GPU: mixtral-compile: error: --int8-activations is for --target cpu: the GPU kernels dequantise q8/q4 weights in registers and keep the activations in f32 (bf16 in the tensor-core tiles)

// Q8:         \22dtype\22:\22q8\22{{.*}}\22panels\22:[16,8]
// Q8-LABEL: func.func @moec_prefill
// Q8:           memref.view {{.*}} {moe.quant = #moe.quant<q8, group_size = 32>, moe.scale_offset = {{[0-9]+}} : i64} {{.*}} to memref<64x64xf32>
// Q8:           memref.view {{.*}} {moe.panels = #moe.panels<cols = 16, lanes = 8>, moe.quant = #moe.quant<q8, group_size = 32>, moe.scale_offset = {{[0-9]+}} : i64} {{.*}} to memref<4x96x64xf32>
// Q8:           memref.view {{.*}} {moe.panels = #moe.panels<cols = 16, lanes = 8>, moe.quant = #moe.quant<q8, group_size = 32>, moe.scale_offset = {{[0-9]+}} : i64} {{.*}} to memref<4x64x96xf32>
// Q8:           moe.sparse_block

// Q8-QUANT-LABEL: func.func @moec_prefill
// Q8-QUANT:         memref.view {{.*}} {moe.panels = #moe.panels<cols = 16, lanes = 8>} : memref<{{.*}}xi8> to memref<4x96x64xi8>
// Q8-QUANT-NEXT:    bufferization.to_tensor
// Q8-QUANT:         memref.view {{.*}} {moe.panels = #moe.panels<cols = 16, lanes = 8>} : memref<{{.*}}xi8> to memref<4x96x2xf16>
// Q8-QUANT:         moe.sparse_block {{.*}} {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>} : (tensor<?x64xf32>, tensor<4x64xf32>, tensor<4x96x64xi8>, tensor<4x96x64xi8>, tensor<4x64x96xi8>, tensor<4x96x2xf16>, tensor<4x96x2xf16>, tensor<4x64x3xf16>)

// Q8-LINALG-DAG: #[[CODES:.*]] = affine_map<(d0, d1, d2) -> (d1 floordiv 16, (d2 mod 8) * 8 + d2 floordiv 8, d1 mod 16)>
// Q8-LINALG-DAG: #[[SCALES:.*]] = affine_map<(d0, d1, d2) -> (d1 floordiv 16, d2 floordiv 32, d1 mod 16)>
// Q8-LINALG-LABEL: func.func @moec_prefill
// Q8-LINALG:         linalg.generic {indexing_maps = [#{{.*}}, #[[CODES]], #[[SCALES]], #{{.*}}], {{.*}} ins({{.*}} : tensor<?x64xf32>, tensor<6x64x16xi8>, tensor<6x2x16xf16>) {{.*}} attrs = {moe.panels = #moe.panels<cols = 16, lanes = 8>, moe.quant = #moe.quant<q8, group_size = 32>}

// Q8-LOWERED-DAG: llvm.func internal @__moe_qgemm_q8_6x16(
// Q8-LOWERED-DAG: llvm.func internal @__moe_qgemm_q8_panels_6x16(
