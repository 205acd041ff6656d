// RUN: moe-opt %s -split-input-file -moe-quantize-weights | FileCheck %s

// A marked q4 weight becomes a data view (K/2 bytes per row) and a scale view at
// offset + scale_offset; moe.linear reads both with the format.
// CHECK-LABEL: func.func @linear_q4
// CHECK-SAME:    (%[[A:.*]]: memref<8192xi8>, %[[X:.*]]: tensor<?x64xf32>, %[[OFF:.*]]: index)
// CHECK:         %[[C:.*]] = arith.constant 512 : index
// CHECK:         %[[SOFF:.*]] = arith.addi %[[OFF]], %[[C]] : index
// CHECK:         %[[D:.*]] = memref.view %[[A]][%[[OFF]]][] : memref<8192xi8> to memref<16x32xi8>
// CHECK:         %[[DT:.*]] = bufferization.to_tensor %[[D]] restrict : memref<16x32xi8> to tensor<16x32xi8>
// CHECK:         %[[S:.*]] = memref.view %[[A]][%[[SOFF]]][] : memref<8192xi8> to memref<16x2xf16>
// CHECK:         %[[ST:.*]] = bufferization.to_tensor %[[S]] restrict
// CHECK:         %[[Y:.*]] = moe.linear %[[X]], %[[DT]] scales %[[ST]] {quant = #moe.quant<q4, group_size = 32>} : (tensor<?x64xf32>, tensor<16x32xi8>, tensor<16x2xf16>) -> tensor<?x16xf32>
// CHECK-NOT:     moe.quant =
// CHECK-NOT:     bf16
// CHECK:         return %[[Y]]
func.func @linear_q4(%arena: memref<8192xi8>, %x: tensor<?x64xf32>, %off: index) -> tensor<?x16xf32> {
  %v = memref.view %arena[%off][] {moe.quant = #moe.quant<q4, group_size = 32>, moe.scale_offset = 512 : i64}
      : memref<8192xi8> to memref<16x64xbf16>
  %w = bufferization.to_tensor %v restrict : memref<16x64xbf16> to tensor<16x64xbf16>
  %y = moe.linear %x, %w : (tensor<?x64xf32>, tensor<16x64xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Unmarked weights (the router gate here, every weight of a float model) stay as they are;
// the three expert weights of a block are quantized together.
// CHECK-LABEL: func.func @block_q8
// CHECK:         %[[G:.*]] = memref.view %{{.*}} : memref<65536xi8> to memref<4x32xbf16>
// CHECK:         %[[GT:.*]] = bufferization.to_tensor %[[G]]
// CHECK-DAG:     memref.view {{.*}} to memref<4x64x32xi8>
// CHECK-DAG:     memref.view {{.*}} to memref<4x64x1xf16>
// CHECK-DAG:     memref.view {{.*}} to memref<4x32x64xi8>
// CHECK-DAG:     memref.view {{.*}} to memref<4x32x2xf16>
// CHECK:         moe.sparse_block %{{.*}}, %[[GT]], %{{.*}}, %{{.*}}, %{{.*}} scales %{{.*}}, %{{.*}}, %{{.*}} {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>} : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x64x32xi8>, tensor<4x64x32xi8>, tensor<4x32x64xi8>, tensor<4x64x1xf16>, tensor<4x64x1xf16>, tensor<4x32x2xf16>) -> tensor<?x32xf32>
func.func @block_q8(%arena: memref<65536xi8>, %x: tensor<?x32xf32>) -> tensor<?x32xf32> {
  %c0 = arith.constant 0 : index
  %c256 = arith.constant 256 : index
  %c16384 = arith.constant 16384 : index
  %c32768 = arith.constant 32768 : index
  %g = memref.view %arena[%c0][] : memref<65536xi8> to memref<4x32xbf16>
  %gt = bufferization.to_tensor %g restrict : memref<4x32xbf16> to tensor<4x32xbf16>
  %v1 = memref.view %arena[%c256][] {moe.quant = #moe.quant<q8, group_size = 32>, moe.scale_offset = 8192 : i64}
      : memref<65536xi8> to memref<4x64x32xbf16>
  %w1 = bufferization.to_tensor %v1 restrict : memref<4x64x32xbf16> to tensor<4x64x32xbf16>
  %v3 = memref.view %arena[%c16384][] {moe.quant = #moe.quant<q8, group_size = 32>, moe.scale_offset = 8192 : i64}
      : memref<65536xi8> to memref<4x64x32xbf16>
  %w3 = bufferization.to_tensor %v3 restrict : memref<4x64x32xbf16> to tensor<4x64x32xbf16>
  %v2 = memref.view %arena[%c32768][] {moe.quant = #moe.quant<q8, group_size = 32>, moe.scale_offset = 8192 : i64}
      : memref<65536xi8> to memref<4x32x64xbf16>
  %w2 = bufferization.to_tensor %v2 restrict : memref<4x32x64xbf16> to tensor<4x32x64xbf16>
  %y = moe.sparse_block %x, %gt, %w1, %w3, %w2 {k = 2 : i64}
      : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x64x32xbf16>, tensor<4x64x32xbf16>,
         tensor<4x32x64xbf16>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// An FP8 checkpoint's experts: w1/w3 have K = hidden (32), w2 K = intermediate (48); one
// #moe.quant<f8e4m3> (one scale per row) fits all three, each with [E, N, 1] scales.
// CHECK-LABEL: func.func @block_f8
// CHECK-DAG:     memref.view {{.*}} to memref<4x48x32xf8E4M3FN>
// CHECK-DAG:     memref.view {{.*}} to memref<4x48x1xf32>
// CHECK-DAG:     memref.view {{.*}} to memref<4x32x48xf8E4M3FN>
// CHECK-DAG:     memref.view {{.*}} to memref<4x32x1xf32>
// CHECK:         moe.sparse_block %{{.*}} {k = 2 : i64, quant = #moe.quant<f8e4m3>} : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x48x32xf8E4M3FN>, tensor<4x48x32xf8E4M3FN>, tensor<4x32x48xf8E4M3FN>, tensor<4x48x1xf32>, tensor<4x48x1xf32>, tensor<4x32x1xf32>) -> tensor<?x32xf32>
func.func @block_f8(%arena: memref<65536xi8>, %x: tensor<?x32xf32>, %gt: tensor<4x32xbf16>) -> tensor<?x32xf32> {
  %c256 = arith.constant 256 : index
  %c16384 = arith.constant 16384 : index
  %c32768 = arith.constant 32768 : index
  %v1 = memref.view %arena[%c256][] {moe.quant = #moe.quant<f8e4m3>, moe.scale_offset = 8192 : i64}
      : memref<65536xi8> to memref<4x48x32xbf16>
  %w1 = bufferization.to_tensor %v1 restrict : memref<4x48x32xbf16> to tensor<4x48x32xbf16>
  %v3 = memref.view %arena[%c16384][] {moe.quant = #moe.quant<f8e4m3>, moe.scale_offset = 8192 : i64}
      : memref<65536xi8> to memref<4x48x32xbf16>
  %w3 = bufferization.to_tensor %v3 restrict : memref<4x48x32xbf16> to tensor<4x48x32xbf16>
  %v2 = memref.view %arena[%c32768][] {moe.quant = #moe.quant<f8e4m3>, moe.scale_offset = 8192 : i64}
      : memref<65536xi8> to memref<4x32x48xbf16>
  %w2 = bufferization.to_tensor %v2 restrict : memref<4x32x48xbf16> to tensor<4x32x48xbf16>
  %y = moe.sparse_block %x, %gt, %w1, %w3, %w2 {k = 2 : i64}
      : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x48x32xbf16>, tensor<4x48x32xbf16>,
         tensor<4x32x48xbf16>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}
