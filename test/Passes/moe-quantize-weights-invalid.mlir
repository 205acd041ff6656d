// RUN: moe-opt %s -split-input-file -moe-quantize-weights=format=q8 -verify-diagnostics
// What moe-quantize-weights refuses, one case per message.

func.func @format_mismatch(%arena: memref<8192xi8>, %x: tensor<?x64xf32>, %off: index) -> tensor<?x16xf32> {
  // expected-error @+1 {{expects every weight in the q8 format the pass was asked for, but this one is laid out as q4.}}
  %v = memref.view %arena[%off][] {moe.quant = #moe.quant<q4, group_size = 32>, moe.scale_offset = 512 : i64}
      : memref<8192xi8> to memref<16x64xbf16>
  %w = bufferization.to_tensor %v restrict : memref<16x64xbf16> to tensor<16x64xbf16>
  %y = moe.linear %x, %w : (tensor<?x64xf32>, tensor<16x64xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

func.func @no_scale_offset(%arena: memref<8192xi8>, %x: tensor<?x64xf32>, %off: index) -> tensor<?x16xf32> {
  // expected-error @+1 {{expects a weight marked for quantization to carry a #moe.quant attribute and an integer moe.scale_offset.}}
  %v = memref.view %arena[%off][] {moe.quant = #moe.quant<q8, group_size = 32>}
      : memref<8192xi8> to memref<16x64xbf16>
  %w = bufferization.to_tensor %v restrict : memref<16x64xbf16> to tensor<16x64xbf16>
  %y = moe.linear %x, %w : (tensor<?x64xf32>, tensor<16x64xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

func.func @partial_group(%arena: memref<8192xi8>, %x: tensor<?x48xf32>, %off: index) -> tensor<?x16xf32> {
  // expected-error @+1 {{expects a weight marked for quantization to have a static, non-empty last dimension that is a multiple of its group size (32).}}
  %v = memref.view %arena[%off][] {moe.quant = #moe.quant<q8, group_size = 32>, moe.scale_offset = 1024 : i64}
      : memref<8192xi8> to memref<16x48xbf16>
  %w = bufferization.to_tensor %v restrict : memref<16x48xbf16> to tensor<16x48xbf16>
  %y = moe.linear %x, %w : (tensor<?x48xf32>, tensor<16x48xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

func.func @float_only_reader(%arena: memref<8192xi8>, %ids: tensor<?xi32>, %off: index) -> tensor<?x64xf32> {
  %v = memref.view %arena[%off][] {moe.quant = #moe.quant<q8, group_size = 32>, moe.scale_offset = 1024 : i64}
      : memref<8192xi8> to memref<16x64xbf16>
  %w = bufferization.to_tensor %v restrict : memref<16x64xbf16> to tensor<16x64xbf16>
  // expected-error @+1 {{reads a quantized weight where only float weights are supported (quantized weights feed moe.linear and the experts of moe.sparse_block).}}
  %y = moe.embedding %w, %ids : (tensor<16x64xbf16>, tensor<?xi32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

func.func @block_mixed(%arena: memref<65536xi8>, %x: tensor<?x32xf32>, %gt: tensor<4x32xbf16>, %w3: tensor<4x64x32xbf16>, %w2: tensor<4x32x64xbf16>) -> tensor<?x32xf32> {
  %c256 = arith.constant 256 : index
  %v1 = memref.view %arena[%c256][] {moe.quant = #moe.quant<q8, group_size = 32>, moe.scale_offset = 8192 : i64}
      : memref<65536xi8> to memref<4x64x32xbf16>
  %w1 = bufferization.to_tensor %v1 restrict : memref<4x64x32xbf16> to tensor<4x64x32xbf16>
  // expected-error @+1 {{expects w1, w3 and w2 to be quantized together, in one format.}}
  %y = moe.sparse_block %x, %gt, %w1, %w3, %w2 {k = 2 : i64}
      : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x64x32xbf16>, tensor<4x64x32xbf16>,
         tensor<4x32x64xbf16>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}
