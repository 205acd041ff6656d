// RUN: moe-opt %s -split-input-file -moe-decompose-sparse-block | FileCheck %s

// Prefill: the token count is dynamic, so R = T*k is too.
// CHECK-LABEL: func.func @prefill
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[G:.*]]: tensor<8x64xbf16>, %[[W1:.*]]: tensor<8x96x64xbf16>, %[[W3:.*]]: tensor<8x96x64xbf16>, %[[W2:.*]]: tensor<8x64x96xbf16>)
// CHECK:         %[[L:.*]] = moe.router %[[X]], %[[G]] : (tensor<?x64xf32>, tensor<8x64xbf16>) -> tensor<?x8xf32>
// CHECK:         %[[W:.*]], %[[I:.*]] = moe.top_k_gating %[[L]] {k = 2 : i64} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
// CHECK:         %[[P:.*]], %[[O:.*]] = moe.dispatch %[[I]] {num_experts = 8 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<9xi32>)
// CHECK:         %[[R:.*]] = moe.gather_rows %[[X]], %[[P]] {k = 2 : i64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
// CHECK:         %[[GATE:.*]] = moe.grouped_matmul %[[R]], %[[W1]], %[[O]] : {{.*}} -> tensor<?x96xf32>
// CHECK:         %[[UP:.*]] = moe.grouped_matmul %[[R]], %[[W3]], %[[O]] : {{.*}} -> tensor<?x96xf32>
// CHECK:         %[[H:.*]] = moe.swiglu %[[GATE]], %[[UP]]
// CHECK:         %[[D:.*]] = moe.grouped_matmul %[[H]], %[[W2]], %[[O]] : {{.*}} -> tensor<?x64xf32>
// CHECK:         %[[Y:.*]] = moe.combine %[[D]], %[[P]], %[[W]] : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
// CHECK:         return %[[Y]]
// CHECK-NOT:     moe.sparse_block
func.func @prefill(%x: tensor<?x64xf32>, %g: tensor<8x64xbf16>, %w1: tensor<8x96x64xbf16>,
                   %w3: tensor<8x96x64xbf16>, %w2: tensor<8x64x96xbf16>) -> tensor<?x64xf32> {
  %y = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64}
      : (tensor<?x64xf32>, tensor<8x64xbf16>, tensor<8x96x64xbf16>, tensor<8x96x64xbf16>,
         tensor<8x64x96xbf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Decode: one token, so every routed shape is static (R = 1*3).
// CHECK-LABEL: func.func @decode
// CHECK:         moe.top_k_gating %{{.*}} {k = 3 : i64} : (tensor<1x4xf32>) -> (tensor<1x3xf32>, tensor<1x3xi32>)
// CHECK:         moe.dispatch %{{.*}} {num_experts = 4 : i64} : (tensor<1x3xi32>) -> (tensor<3xi32>, tensor<5xi32>)
// CHECK:         moe.gather_rows {{.*}} -> tensor<3x32xf32>
// CHECK:         moe.combine {{.*}} : (tensor<3x32xf32>, tensor<3xi32>, tensor<1x3xf32>) -> tensor<1x32xf32>
func.func @decode(%x: tensor<1x32xf32>, %g: tensor<4x32xf32>, %w1: tensor<4x40x32xf32>,
                  %w3: tensor<4x40x32xf32>, %w2: tensor<4x32x40xf32>) -> tensor<1x32xf32> {
  %y = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 3 : i64}
      : (tensor<1x32xf32>, tensor<4x32xf32>, tensor<4x40x32xf32>, tensor<4x40x32xf32>,
         tensor<4x32x40xf32>) -> tensor<1x32xf32>
  return %y : tensor<1x32xf32>
}

// -----

// Two blocks in one function (two layers) are both rewritten.
// CHECK-LABEL: func.func @two_layers
// CHECK-COUNT-2: moe.combine
// CHECK-NOT:     moe.sparse_block
func.func @two_layers(%x: tensor<?x16xf32>, %g: tensor<2x16xf32>, %w1: tensor<2x8x16xf32>,
                      %w3: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) -> tensor<?x16xf32> {
  %y = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 1 : i64}
      : (tensor<?x16xf32>, tensor<2x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>,
         tensor<2x16x8xf32>) -> tensor<?x16xf32>
  %z = moe.sparse_block %y, %g, %w1, %w3, %w2 {k = 1 : i64}
      : (tensor<?x16xf32>, tensor<2x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>,
         tensor<2x16x8xf32>) -> tensor<?x16xf32>
  return %z : tensor<?x16xf32>
}

// -----

// Quantized experts: every grouped GEMM takes its weight's data, scales and the block's format.
// CHECK-LABEL: func.func @quantized
// CHECK-SAME:    (%[[X:.*]]: tensor<?x32xf32>, %[[G:.*]]: tensor<4x32xbf16>, %[[W1:.*]]: tensor<4x64x16xi8>, %[[W3:.*]]: tensor<4x64x16xi8>, %[[W2:.*]]: tensor<4x32x32xi8>, %[[S1:.*]]: tensor<4x64x1xf16>, %[[S3:.*]]: tensor<4x64x1xf16>, %[[S2:.*]]: tensor<4x32x2xf16>)
// CHECK:         moe.router %[[X]], %[[G]]
// CHECK:         %[[P:.*]], %[[O:.*]] = moe.dispatch
// CHECK:         %[[R:.*]] = moe.gather_rows %[[X]], %[[P]]
// CHECK:         moe.grouped_matmul %[[R]], %[[W1]], %[[O]] scales %[[S1]] {quant = #moe.quant<q4, group_size = 32>}
// CHECK:         moe.grouped_matmul %[[R]], %[[W3]], %[[O]] scales %[[S3]] {quant = #moe.quant<q4, group_size = 32>}
// CHECK:         moe.grouped_matmul %{{.*}}, %[[W2]], %[[O]] scales %[[S2]] {quant = #moe.quant<q4, group_size = 32>}
func.func @quantized(%x: tensor<?x32xf32>, %g: tensor<4x32xbf16>, %w1: tensor<4x64x16xi8>,
                     %w3: tensor<4x64x16xi8>, %w2: tensor<4x32x32xi8>, %s1: tensor<4x64x1xf16>,
                     %s3: tensor<4x64x1xf16>, %s2: tensor<4x32x2xf16>) -> tensor<?x32xf32> {
  %y = moe.sparse_block %x, %g, %w1, %w3, %w2 scales %s1, %s3, %s2
      {k = 2 : i64, quant = #moe.quant<q4, group_size = 32>}
      : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x64x16xi8>, tensor<4x64x16xi8>,
         tensor<4x32x32xi8>, tensor<4x64x1xf16>, tensor<4x64x1xf16>, tensor<4x32x2xf16>)
      -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// f8e4m3 experts with hidden (32) != intermediate (48): every grouped GEMM gets the one
// per-row format, so w2's row (K = 48) has its own single scale.
// CHECK-LABEL: func.func @quantized_f8
// CHECK:         moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} scales %{{.*}} {quant = #moe.quant<f8e4m3>} : (tensor<?x32xf32>, tensor<4x48x32xf8E4M3FN>, tensor<5xi32>, tensor<4x48x1xf32>) -> tensor<?x48xf32>
// CHECK:         moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} scales %{{.*}} {quant = #moe.quant<f8e4m3>} : (tensor<?x32xf32>, tensor<4x48x32xf8E4M3FN>, tensor<5xi32>, tensor<4x48x1xf32>) -> tensor<?x48xf32>
// CHECK:         moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} scales %{{.*}} {quant = #moe.quant<f8e4m3>} : (tensor<?x48xf32>, tensor<4x32x48xf8E4M3FN>, tensor<5xi32>, tensor<4x32x1xf32>) -> tensor<?x32xf32>
func.func @quantized_f8(%x: tensor<?x32xf32>, %g: tensor<4x32xbf16>, %w1: tensor<4x48x32xf8E4M3FN>,
                        %w2: tensor<4x32x48xf8E4M3FN>, %s1: tensor<4x48x1xf32>,
                        %s2: tensor<4x32x1xf32>) -> tensor<?x32xf32> {
  %y = moe.sparse_block %x, %g, %w1, %w1, %w2 scales %s1, %s1, %s2
      {k = 2 : i64, quant = #moe.quant<f8e4m3>}
      : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x48x32xf8E4M3FN>, tensor<4x48x32xf8E4M3FN>,
         tensor<4x32x48xf8E4M3FN>, tensor<4x48x1xf32>, tensor<4x48x1xf32>, tensor<4x32x1xf32>)
      -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}
