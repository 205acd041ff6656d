// RUN: moe-opt %s -split-input-file -moe-gpu-lower-to-launches -verify-diagnostics
// The lowering starts from the middle end's fused routed ops, its kernel boundaries: a MoE
// block that did not go through moe-decompose-sparse-block and moe-fuse-expert-gemms, a chain
// the fusion left alone, or an input it cannot place in device buffers is refused with a
// diagnostic instead of being miscompiled.

func.func @whole_block(%xm: memref<2x64xf32>, %gm: memref<4x64xf32>, %w1m: memref<4x32x64xf32>, %w2m: memref<4x64x32xf32>, %out: memref<2x64xf32>) {
  %x = bufferization.to_tensor %xm restrict : memref<2x64xf32> to tensor<2x64xf32>
  %g = bufferization.to_tensor %gm restrict : memref<4x64xf32> to tensor<4x64xf32>
  %w1 = bufferization.to_tensor %w1m restrict : memref<4x32x64xf32> to tensor<4x32x64xf32>
  %w2 = bufferization.to_tensor %w2m restrict : memref<4x64x32xf32> to tensor<4x64x32xf32>
  // expected-error @+1 {{'moe.sparse_block' op has no GPU kernel (the GPU path lowers the fused routed ops: run moe-decompose-sparse-block and moe-fuse-expert-gemms first)}}
  %y = moe.sparse_block %x, %g, %w1, %w1, %w2 {k = 2 : i64} : (tensor<2x64xf32>, tensor<4x64xf32>, tensor<4x32x64xf32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>) -> tensor<2x64xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<2x64xf32>, memref<2x64xf32>) -> ()
  return
}

// -----

func.func @unfused_grouped_matmul(%rm: memref<4x64xf32>, %wm: memref<4x32x64xf32>, %om: memref<5xi32>, %out: memref<4x32xf32>) {
  %rows = bufferization.to_tensor %rm restrict : memref<4x64xf32> to tensor<4x64xf32>
  %w = bufferization.to_tensor %wm restrict : memref<4x32x64xf32> to tensor<4x32x64xf32>
  %offsets = bufferization.to_tensor %om restrict : memref<5xi32> to tensor<5xi32>
  // expected-error @+1 {{'moe.grouped_matmul' op has no GPU kernel (the GPU path lowers the fused routed ops: run moe-decompose-sparse-block and moe-fuse-expert-gemms first)}}
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
  // expected-error @+1 {{'moe.grouped_matmul_combine' op needs a permutation made by moe.dispatch on the GPU path (the combine kernel reads the dispatch kernel's inverse permutation)}}
  %y = moe.grouped_matmul_combine %h, %w2, %offsets, %perm, %weights
      : (tensor<4x32xf32>, tensor<4x64x32xf32>, tensor<5xi32>, tensor<4xi32>, tensor<2x2xf32>) -> tensor<2x64xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<2x64xf32>, memref<2x64xf32>) -> ()
  return
}

// -----

func.func @too_many_experts(%im: memref<1x2xi32>, %pm: memref<2xi32>, %om: memref<301xi32>) {
  %ids = bufferization.to_tensor %im restrict : memref<1x2xi32> to tensor<1x2xi32>
  // expected-error @+1 {{'moe.dispatch' op the GPU dispatch kernel supports at most 256 experts}}
  %perm, %offsets = moe.dispatch %ids {num_experts = 300 : i64} : (tensor<1x2xi32>) -> (tensor<2xi32>, tensor<301xi32>)
  bufferization.materialize_in_destination %perm in restrict writable %pm : (tensor<2xi32>, memref<2xi32>) -> ()
  bufferization.materialize_in_destination %offsets in restrict writable %om : (tensor<301xi32>, memref<301xi32>) -> ()
  return
}

// -----

func.func @mixed_weights(%xm: memref<1x64xf32>, %am: memref<16x64xbf16>, %bm: memref<64x16xf16>, %out: memref<1x64xf32>) {
  %x = bufferization.to_tensor %xm restrict : memref<1x64xf32> to tensor<1x64xf32>
  %a = bufferization.to_tensor %am restrict : memref<16x64xbf16> to tensor<16x64xbf16>
  %b = bufferization.to_tensor %bm restrict : memref<64x16xf16> to tensor<64x16xf16>
  %y = moe.linear %x, %a : (tensor<1x64xf32>, tensor<16x64xbf16>) -> tensor<1x16xf32>
  // expected-error @+1 {{'moe.linear' op has 'f16' weights where an earlier op has 'bf16' ones; the GPU kernel library holds one weight type per model.}}
  %z = moe.linear %y, %b : (tensor<1x16xf32>, tensor<64x16xf16>) -> tensor<1x64xf32>
  bufferization.materialize_in_destination %z in restrict writable %out : (tensor<1x64xf32>, memref<1x64xf32>) -> ()
  return
}

// -----

// expected-error @+1 {{'func.func' op takes or returns tensors; GPU entry points take device buffers (memrefs) and read them through bufferization.to_tensor.}}
func.func @tensor_arguments(%x: tensor<1x64xf32>, %w: tensor<16x64xf32>) -> tensor<1x16xf32> {
  %y = moe.linear %x, %w : (tensor<1x64xf32>, tensor<16x64xf32>) -> tensor<1x16xf32>
  return %y : tensor<1x16xf32>
}
