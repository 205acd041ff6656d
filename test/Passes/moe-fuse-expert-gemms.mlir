// RUN: moe-opt %s -split-input-file -moe-fuse-expert-gemms | FileCheck %s

// The routed form of moe-decompose-sparse-block fuses into two expert kernels.
// CHECK-LABEL: func.func @routed
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[G:.*]]: tensor<8x64xbf16>, %[[W1:.*]]: tensor<8x96x64xbf16>, %[[W3:.*]]: tensor<8x96x64xbf16>, %[[W2:.*]]: tensor<8x64x96xbf16>)
// CHECK:         %[[W:.*]], %[[I:.*]] = moe.top_k_gating
// CHECK:         %[[P:.*]], %[[O:.*]] = moe.dispatch %[[I]]
// CHECK-NOT:     moe.gather_rows
// CHECK:         %[[H:.*]] = moe.grouped_swiglu %[[X]], %[[P]], %[[O]], %[[W1]], %[[W3]] {k = 2 : i64} : (tensor<?x64xf32>, tensor<?xi32>, tensor<9xi32>, tensor<8x96x64xbf16>, tensor<8x96x64xbf16>) -> tensor<?x96xf32>
// CHECK:         %[[Y:.*]] = moe.grouped_matmul_combine %[[H]], %[[W2]], %[[O]], %[[P]], %[[W]] : (tensor<?x96xf32>, tensor<8x64x96xbf16>, tensor<9xi32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
// CHECK:         return %[[Y]]
// CHECK-NOT:     moe.grouped_matmul %
// CHECK-NOT:     moe.swiglu
// CHECK-NOT:     moe.combine
func.func @routed(%x: tensor<?x64xf32>, %g: tensor<8x64xbf16>, %w1: tensor<8x96x64xbf16>,
                  %w3: tensor<8x96x64xbf16>, %w2: tensor<8x64x96xbf16>) -> tensor<?x64xf32> {
  %l = moe.router %x, %g : (tensor<?x64xf32>, tensor<8x64xbf16>) -> tensor<?x8xf32>
  %w, %ids = moe.top_k_gating %l {k = 2 : i64} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %p, %o = moe.dispatch %ids {num_experts = 8 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<9xi32>)
  %r = moe.gather_rows %x, %p {k = 2 : i64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  %gate = moe.grouped_matmul %r, %w1, %o : (tensor<?x64xf32>, tensor<8x96x64xbf16>, tensor<9xi32>) -> tensor<?x96xf32>
  %up = moe.grouped_matmul %r, %w3, %o : (tensor<?x64xf32>, tensor<8x96x64xbf16>, tensor<9xi32>) -> tensor<?x96xf32>
  %h = moe.swiglu %gate, %up : (tensor<?x96xf32>, tensor<?x96xf32>) -> tensor<?x96xf32>
  %d = moe.grouped_matmul %h, %w2, %o : (tensor<?x96xf32>, tensor<8x64x96xbf16>, tensor<9xi32>) -> tensor<?x64xf32>
  %y = moe.combine %d, %p, %w : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Intermediates with other uses are kept: the gathered rows and the gate GEMM escape, and
// so does the down projection; nothing is fused.
// CHECK-LABEL: func.func @escaping
// CHECK:         moe.gather_rows
// CHECK:         moe.grouped_matmul
// CHECK:         moe.grouped_matmul
// CHECK:         moe.swiglu
// CHECK:         moe.grouped_matmul
// CHECK:         moe.combine
// CHECK-NOT:     moe.grouped_swiglu
// CHECK-NOT:     moe.grouped_matmul_combine
func.func @escaping(%x: tensor<3x16xf32>, %p: tensor<3xi32>, %o: tensor<3xi32>, %w: tensor<3x1xf32>,
                    %w1: tensor<2x8x16xf32>, %w3: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>)
    -> (tensor<3x16xf32>, tensor<3x8xf32>, tensor<3x16xf32>, tensor<3x16xf32>) {
  %r = moe.gather_rows %x, %p {k = 1 : i64} : (tensor<3x16xf32>, tensor<3xi32>) -> tensor<3x16xf32>
  %gate = moe.grouped_matmul %r, %w1, %o : (tensor<3x16xf32>, tensor<2x8x16xf32>, tensor<3xi32>) -> tensor<3x8xf32>
  %up = moe.grouped_matmul %r, %w3, %o : (tensor<3x16xf32>, tensor<2x8x16xf32>, tensor<3xi32>) -> tensor<3x8xf32>
  %h = moe.swiglu %gate, %up : (tensor<3x8xf32>, tensor<3x8xf32>) -> tensor<3x8xf32>
  %d = moe.grouped_matmul %h, %w2, %o : (tensor<3x8xf32>, tensor<2x16x8xf32>, tensor<3xi32>) -> tensor<3x16xf32>
  %y = moe.combine %d, %p, %w : (tensor<3x16xf32>, tensor<3xi32>, tensor<3x1xf32>) -> tensor<3x16xf32>
  return %r, %gate, %d, %y : tensor<3x16xf32>, tensor<3x8xf32>, tensor<3x16xf32>, tensor<3x16xf32>
}

// -----

// Gate and up GEMMs over different offsets are not one grouped_swiglu; the down
// projection still fuses with the combine.
// CHECK-LABEL: func.func @different_offsets
// CHECK:         moe.swiglu
// CHECK:         moe.grouped_matmul_combine
func.func @different_offsets(%x: tensor<3x16xf32>, %p: tensor<3xi32>, %o: tensor<3xi32>,
                             %o2: tensor<3xi32>, %w: tensor<3x1xf32>, %w1: tensor<2x8x16xf32>,
                             %w3: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) -> tensor<3x16xf32> {
  %r = moe.gather_rows %x, %p {k = 1 : i64} : (tensor<3x16xf32>, tensor<3xi32>) -> tensor<3x16xf32>
  %gate = moe.grouped_matmul %r, %w1, %o : (tensor<3x16xf32>, tensor<2x8x16xf32>, tensor<3xi32>) -> tensor<3x8xf32>
  %up = moe.grouped_matmul %r, %w3, %o2 : (tensor<3x16xf32>, tensor<2x8x16xf32>, tensor<3xi32>) -> tensor<3x8xf32>
  %h = moe.swiglu %gate, %up : (tensor<3x8xf32>, tensor<3x8xf32>) -> tensor<3x8xf32>
  %d = moe.grouped_matmul %h, %w2, %o : (tensor<3x8xf32>, tensor<2x16x8xf32>, tensor<3xi32>) -> tensor<3x16xf32>
  %y = moe.combine %d, %p, %w : (tensor<3x16xf32>, tensor<3xi32>, tensor<3x1xf32>) -> tensor<3x16xf32>
  return %y : tensor<3x16xf32>
}

// -----

// Quantized experts fuse the same way; the fused kernels carry the scales and the format.
// CHECK-LABEL: func.func @quantized
// CHECK:         moe.grouped_swiglu %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} scales %[[S1:.*]], %[[S3:.*]] {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>}
// CHECK:         moe.grouped_matmul_combine %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} scales %{{.*}} {quant = #moe.quant<q8, group_size = 32>}
func.func @quantized(%x: tensor<?x64xf32>, %w1: tensor<8x96x64xi8>, %s1: tensor<8x96x2xf16>,
                     %w3: tensor<8x96x64xi8>, %s3: tensor<8x96x2xf16>, %w2: tensor<8x64x96xi8>,
                     %s2: tensor<8x64x3xf16>, %p: tensor<?xi32>, %o: tensor<9xi32>,
                     %w: tensor<?x2xf32>) -> tensor<?x64xf32> {
  %r = moe.gather_rows %x, %p {k = 2 : i64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  %gate = moe.grouped_matmul %r, %w1, %o scales %s1 {quant = #moe.quant<q8, group_size = 32>} : (tensor<?x64xf32>, tensor<8x96x64xi8>, tensor<9xi32>, tensor<8x96x2xf16>) -> tensor<?x96xf32>
  %up = moe.grouped_matmul %r, %w3, %o scales %s3 {quant = #moe.quant<q8, group_size = 32>} : (tensor<?x64xf32>, tensor<8x96x64xi8>, tensor<9xi32>, tensor<8x96x2xf16>) -> tensor<?x96xf32>
  %h = moe.swiglu %gate, %up : (tensor<?x96xf32>, tensor<?x96xf32>) -> tensor<?x96xf32>
  %d = moe.grouped_matmul %h, %w2, %o scales %s2 {quant = #moe.quant<q8, group_size = 32>} : (tensor<?x96xf32>, tensor<8x64x96xi8>, tensor<9xi32>, tensor<8x64x3xf16>) -> tensor<?x64xf32>
  %y = moe.combine %d, %p, %w : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
