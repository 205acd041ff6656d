// RUN: moe-opt %s -split-input-file -moe-gpu-lower-to-launches -verify-diagnostics
// Quantized weights have no GPU lowering: the pass refuses them (marked views before
// moe-quantize-weights, quantized ops after) instead of reading their bytes as floats.

func.func @marked_view(%arena: memref<8192xi8>, %x: tensor<?x64xf32>, %off: index) -> tensor<?x16xf32> {
  // expected-error @+1 {{quantized weights (#moe.quant) have no GPU lowering yet; compile them for --target cpu.}}
  %v = memref.view %arena[%off][] {moe.quant = #moe.quant<q4, group_size = 32>, moe.scale_offset = 512 : i64}
      : memref<8192xi8> to memref<16x64xbf16>
  %w = bufferization.to_tensor %v restrict : memref<16x64xbf16> to tensor<16x64xbf16>
  %y = moe.linear %x, %w : (tensor<?x64xf32>, tensor<16x64xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

func.func @quantized_linear(%x: tensor<?x64xf32>, %d: tensor<16x64xi8>, %s: tensor<16x2xf16>) -> tensor<?x16xf32> {
  // expected-error @+1 {{quantized weights (#moe.quant) have no GPU lowering yet; compile them for --target cpu.}}
  %y = moe.linear %x, %d scales %s {quant = #moe.quant<q8, group_size = 32>}
      : (tensor<?x64xf32>, tensor<16x64xi8>, tensor<16x2xf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
