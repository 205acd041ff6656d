// RUN: moe-opt %s -split-input-file -moe-gpu-form-kernel-calls -verify-diagnostics
// Kernel calls are formed only from the middle end's fused routed ops, the GPU kernel
// boundaries: a MoE block that did not go through moe-decompose-sparse-block and
// moe-fuse-expert-gemms, or a combine whose permutation no dispatch made, is refused.

func.func @whole_block(%xm: memref<2x64xf32>, %gm: memref<4x64xf32>, %w1m: memref<4x32x64xf32>, %w2m: memref<4x64x32xf32>, %out: memref<2x64xf32>) {
  %x = bufferization.to_tensor %xm restrict : memref<2x64xf32> to tensor<2x64xf32>
  %g = bufferization.to_tensor %gm restrict : memref<4x64xf32> to tensor<4x64xf32>
  %w1 = bufferization.to_tensor %w1m restrict : memref<4x32x64xf32> to tensor<4x32x64xf32>
  %w2 = bufferization.to_tensor %w2m restrict : memref<4x64x32xf32> to tensor<4x64x32xf32>
  // expected-error @+1 {{'moe.sparse_block' op has no GPU kernel (the GPU path lowers the fused routed ops: run moe-decompose-sparse-block and moe-fuse-expert-gemms first).}}
  %y = moe.sparse_block %x, %g, %w1, %w1, %w2 {k = 2 : i64} : (tensor<2x64xf32>, tensor<4x64xf32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<2x64xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<2x64xf32>, memref<2x64xf32>) -> ()
  return
}

// -----

func.func @unfused_grouped_matmul(%rm: memref<4x64xf32>, %wm: memref<4x32x64xf32>, %om: memref<5xi32>, %out: memref<4x32xf32>) {
  %rows = bufferization.to_tensor %rm restrict : memref<4x64xf32> to tensor<4x64xf32>
  %w = bufferization.to_tensor %wm restrict : memref<4x32x64xf32> to tensor<4x32x64xf32>
  %offsets = bufferization.to_tensor %om restrict : memref<5xi32> to tensor<5xi32>
  // expected-error @+1 {{'moe.grouped_matmul' op has no GPU kernel (the GPU path lowers the fused routed ops: run moe-decompose-sparse-block and moe-fuse-expert-gemms first).}}
  %y = moe.grouped_matmul %rows, %w, %offsets : (tensor<4x64xf32>, tensor<4x32x64xf32>, tensor<5xi32>) -> tensor<4x32xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<4x32xf32>, memref<4x32xf32>) -> ()
  return
}

// -----

func.func @combine_without_dispatch(%hm: memref<4x32xf32>, %w2m: memref<4x64x32xf32>, %om: memref<5xi32>, %pm: memref<4xi32>, %wm: memref<2x2xf32>, %out: memref<2x64xf32>) {
  %h = bufferization.to_tensor %hm restrict : memref<4x32xf32> to tensor<4x32xf32>
  %w2 = bufferization.to_tensor %w2m restrict : memref<4x64x32xf32> to tensor<4x64x32xf32>
  %offsets = bufferization.to_tensor %om restrict : memref<5xi32> to tensor<5xi32>
  %perm = bufferization.to_tensor %pm restrict : memref<4xi32> to tensor<4xi32>
  %weights = bufferization.to_tensor %wm restrict : memref<2x2xf32> to tensor<2x2xf32>
  // expected-error @+1 {{'moe.grouped_matmul_combine' op needs a permutation made by moe.dispatch on the GPU path (the combine kernel reads the dispatch kernel's inverse permutation).}}
  %y = moe.grouped_matmul_combine %h, %w2, %offsets, %perm, %weights
      : (tensor<4x32xf32>, tensor<4x64x32xf32>, tensor<5xi32>, tensor<4xi32>, tensor<2x2xf32>) -> tensor<2x64xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<2x64xf32>, memref<2x64xf32>) -> ()
  return
}
