// RUN: moe-opt %s -split-input-file -canonicalize | FileCheck %s

// Softmax over a single selected logit is exactly 1.
// CHECK-LABEL: func.func @top_one_weights
// CHECK-SAME:    (%[[L:.*]]: tensor<?x4xf32>)
// CHECK-DAG:     %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG:     %[[C0:.*]] = arith.constant 0 : index
// CHECK:         %[[T:.*]] = tensor.dim %[[L]], %[[C0]]
// CHECK:         %[[W:.*]] = tensor.splat %[[ONE]][%[[T]]] : tensor<?x1xf32>
// CHECK:         %{{.*}}, %[[I:.*]] = moe.top_k_gating %[[L]] {k = 1 : i64}
// CHECK:         return %[[W]], %[[I]]
func.func @top_one_weights(%l: tensor<?x4xf32>) -> (tensor<?x1xf32>, tensor<?x1xi32>) {
  %w, %i = moe.top_k_gating %l {k = 1 : i64}
      : (tensor<?x4xf32>) -> (tensor<?x1xf32>, tensor<?x1xi32>)
  return %w, %i : tensor<?x1xf32>, tensor<?x1xi32>
}

// -----

// k = 2: the weights carry information and stay.
// CHECK-LABEL: func.func @top_two_weights
// CHECK:         %[[W:.*]], %{{.*}} = moe.top_k_gating
// CHECK-NOT:     tensor.splat
// CHECK:         return %[[W]]
func.func @top_two_weights(%l: tensor<?x4xf32>) -> tensor<?x2xf32> {
  %w, %i = moe.top_k_gating %l {k = 2 : i64}
      : (tensor<?x4xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  return %w : tensor<?x2xf32>
}

// -----

// One expert: the block is a dense SwiGLU FFN.
// CHECK-LABEL: func.func @single_expert
// CHECK-SAME:    (%[[X:.*]]: tensor<?x16xf32>, %{{.*}}: tensor<1x16xf32>, %[[W1:.*]]: tensor<1x24x16xbf16>, %[[W3:.*]]: tensor<1x24x16xbf16>, %[[W2:.*]]: tensor<1x16x24xbf16>)
// CHECK-DAG:     %[[A:.*]] = tensor.collapse_shape %[[W1]] {{\[}}[0, 1], [2]] : tensor<1x24x16xbf16> into tensor<24x16xbf16>
// CHECK-DAG:     %[[B:.*]] = tensor.collapse_shape %[[W3]] {{\[}}[0, 1], [2]] : tensor<1x24x16xbf16> into tensor<24x16xbf16>
// CHECK-DAG:     %[[G:.*]] = moe.linear %[[X]], %[[A]]
// CHECK-DAG:     %[[U:.*]] = moe.linear %[[X]], %[[B]]
// CHECK:         %[[H:.*]] = moe.swiglu %[[G]], %[[U]]
// CHECK:         %[[C:.*]] = tensor.collapse_shape %[[W2]] {{\[}}[0, 1], [2]] : tensor<1x16x24xbf16> into tensor<16x24xbf16>
// CHECK:         %[[Y:.*]] = moe.linear %[[H]], %[[C]] : (tensor<?x24xf32>, tensor<16x24xbf16>) -> tensor<?x16xf32>
// CHECK:         return %[[Y]]
func.func @single_expert(%x: tensor<?x16xf32>, %g: tensor<1x16xf32>, %w1: tensor<1x24x16xbf16>,
                         %w3: tensor<1x24x16xbf16>, %w2: tensor<1x16x24xbf16>) -> tensor<?x16xf32> {
  %y = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 1 : i64}
      : (tensor<?x16xf32>, tensor<1x16xf32>, tensor<1x24x16xbf16>, tensor<1x24x16xbf16>,
         tensor<1x16x24xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Two experts: routing is real, the block stays.
// CHECK-LABEL: func.func @two_experts
// CHECK:         moe.sparse_block
func.func @two_experts(%x: tensor<?x16xf32>, %g: tensor<2x16xf32>, %w1: tensor<2x24x16xf32>,
                       %w3: tensor<2x24x16xf32>, %w2: tensor<2x16x24xf32>) -> tensor<?x16xf32> {
  %y = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 1 : i64}
      : (tensor<?x16xf32>, tensor<2x16xf32>, tensor<2x24x16xf32>, tensor<2x24x16xf32>,
         tensor<2x16x24xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// A kernel call on tensors has no side effects (an unused one goes); on buffers it reads
// and writes them (it stays).
// CHECK-LABEL: func.func @kernel_call_effects
// CHECK-NOT:     "rms_norm"
// CHECK:         moe.kernel_call "copy"
// CHECK-NEXT:    return
func.func @kernel_call_effects(%x: tensor<4xf32>, %a: memref<4xf32>, %b: memref<4xf32>) {
  %0 = moe.kernel_call "rms_norm" ins(%x : tensor<4xf32>) outs(%x : tensor<4xf32>) -> tensor<4xf32>
  moe.kernel_call "copy" ins(%a : memref<4xf32>) outs(%b : memref<4xf32>)
  return
}
