// RUN: moe-opt %s -split-input-file | moe-opt -split-input-file | FileCheck %s
// Round trip of every moe op: printed IR parses back to the same IR.

// CHECK-LABEL: func.func @routing
// CHECK:         %[[L:.*]] = moe.router %{{.*}}, %{{.*}} : (tensor<?x64xf32>, tensor<8x64xbf16>) -> tensor<?x8xf32>
// CHECK:         %[[W:.*]], %[[I:.*]] = moe.top_k_gating %[[L]] {k = 2 : i64} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
// CHECK:         %[[P:.*]], %[[O:.*]] = moe.dispatch %[[I]] {num_experts = 8 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<9xi32>)
// CHECK:         %[[G:.*]] = moe.gather_rows %{{.*}}, %[[P]] {k = 2 : i64}
// CHECK:         %[[H1:.*]] = moe.grouped_matmul %[[G]], %{{.*}}, %[[O]] : (tensor<?x64xf32>, tensor<8x96x64xbf16>, tensor<9xi32>) -> tensor<?x96xf32>
// CHECK:         %[[S:.*]] = moe.swiglu %[[H1]], %{{.*}} : (tensor<?x96xf32>, tensor<?x96xf32>) -> tensor<?x96xf32>
// CHECK:         moe.combine %{{.*}}, %[[P]], %[[W]] : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
func.func @routing(%x: tensor<?x64xf32>, %g: tensor<8x64xbf16>, %w1: tensor<8x96x64xbf16>,
                   %w3: tensor<8x96x64xbf16>, %w2: tensor<8x64x96xbf16>) -> tensor<?x64xf32> {
  %logits = moe.router %x, %g : (tensor<?x64xf32>, tensor<8x64xbf16>) -> tensor<?x8xf32>
  %weights, %ids = moe.top_k_gating %logits {k = 2 : i64}
      : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %perm, %offsets = moe.dispatch %ids {num_experts = 8 : i64}
      : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<9xi32>)
  %rows = moe.gather_rows %x, %perm {k = 2 : i64}
      : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  %gate = moe.grouped_matmul %rows, %w1, %offsets
      : (tensor<?x64xf32>, tensor<8x96x64xbf16>, tensor<9xi32>) -> tensor<?x96xf32>
  %up = moe.grouped_matmul %rows, %w3, %offsets
      : (tensor<?x64xf32>, tensor<8x96x64xbf16>, tensor<9xi32>) -> tensor<?x96xf32>
  %h = moe.swiglu %gate, %up : (tensor<?x96xf32>, tensor<?x96xf32>) -> tensor<?x96xf32>
  %down = moe.grouped_matmul %h, %w2, %offsets
      : (tensor<?x96xf32>, tensor<8x64x96xbf16>, tensor<9xi32>) -> tensor<?x64xf32>
  %y = moe.combine %down, %perm, %weights
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// The decode path: one token, every shape static.
// CHECK-LABEL: func.func @block_decode
// CHECK:         moe.sparse_block %{{.*}} {k = 2 : i64} : (tensor<1x64xf32>, tensor<8x64xf32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32>) -> tensor<1x64xf32>
func.func @block_decode(%x: tensor<1x64xf32>, %g: tensor<8x64xf32>, %w1: tensor<8x96x64xf32>,
                        %w3: tensor<8x96x64xf32>, %w2: tensor<8x64x96xf32>) -> tensor<1x64xf32> {
  %y = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64}
      : (tensor<1x64xf32>, tensor<8x64xf32>, tensor<8x96x64xf32>, tensor<8x96x64xf32>,
         tensor<8x64x96xf32>) -> tensor<1x64xf32>
  return %y : tensor<1x64xf32>
}

// -----

// CHECK-LABEL: func.func @fused
// CHECK:         %[[H:.*]] = moe.grouped_swiglu %{{.*}} {k = 2 : i64} : (tensor<?x64xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x96x64xf16>, tensor<4x96x64xf16>) -> tensor<?x96xf32>
// CHECK:         moe.grouped_matmul_combine %[[H]], %{{.*}} : (tensor<?x96xf32>, tensor<4x64x96xf16>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x64xf32>
func.func @fused(%x: tensor<?x64xf32>, %perm: tensor<?xi32>, %offsets: tensor<5xi32>,
                 %w: tensor<?x2xf32>, %w1: tensor<4x96x64xf16>, %w3: tensor<4x96x64xf16>,
                 %w2: tensor<4x64x96xf16>) -> tensor<?x64xf32> {
  %h = moe.grouped_swiglu %x, %perm, %offsets, %w1, %w3 {k = 2 : i64}
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x96x64xf16>,
         tensor<4x96x64xf16>) -> tensor<?x96xf32>
  %y = moe.grouped_matmul_combine %h, %w2, %offsets, %perm, %w
      : (tensor<?x96xf32>, tensor<4x64x96xf16>, tensor<5xi32>, tensor<?xi32>,
         tensor<?x2xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// CHECK-LABEL: func.func @dense
// CHECK:         moe.embedding %{{.*}}, %{{.*}} : (tensor<512x64xbf16>, tensor<?xi32>) -> tensor<?x64xf32>
// CHECK:         moe.rms_norm %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f64} : (tensor<?x64xf32>, tensor<64xbf16>) -> tensor<?x64xf32>
// CHECK:         moe.linear %{{.*}}, %{{.*}} : (tensor<?x64xf32>, tensor<64x64xbf16>) -> tensor<?x64xf32>
// CHECK:         moe.rope %{{.*}}, %{{.*}} {theta = 1.000000e+06 : f64} : (tensor<?x4x16xf32>, index) -> tensor<?x4x16xf32>
// CHECK:         moe.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {scale = 2.500000e-01 : f64, sliding_window = 8 : i64} : (tensor<?x4x16xf32>, tensor<128x2x16xf32>, tensor<128x2x16xf32>, index) -> tensor<?x4x16xf32>
func.func @dense(%table: tensor<512x64xbf16>, %ids: tensor<?xi32>, %norm: tensor<64xbf16>,
                 %wq: tensor<64x64xbf16>, %kc: tensor<128x2x16xf32>, %vc: tensor<128x2x16xf32>,
                 %start: index) -> tensor<?x4x16xf32> {
  %x = moe.embedding %table, %ids : (tensor<512x64xbf16>, tensor<?xi32>) -> tensor<?x64xf32>
  %n = moe.rms_norm %x, %norm {epsilon = 1.0e-05 : f64}
      : (tensor<?x64xf32>, tensor<64xbf16>) -> tensor<?x64xf32>
  %q = moe.linear %n, %wq : (tensor<?x64xf32>, tensor<64x64xbf16>) -> tensor<?x64xf32>
  %q3 = tensor.expand_shape %q [[0], [1, 2]] output_shape [%start, 4, 16]
      : tensor<?x64xf32> into tensor<?x4x16xf32>
  %qr = moe.rope %q3, %start {theta = 1.0e+06 : f64}
      : (tensor<?x4x16xf32>, index) -> tensor<?x4x16xf32>
  %o = moe.attention %qr, %kc, %vc, %start {scale = 0.25 : f64, sliding_window = 8 : i64}
      : (tensor<?x4x16xf32>, tensor<128x2x16xf32>, tensor<128x2x16xf32>, index)
      -> tensor<?x4x16xf32>
  return %o : tensor<?x4x16xf32>
}

// -----

// Quantized weights: data, scales after `scales`, and the #moe.quant format.
// CHECK-LABEL: func.func @quantized
// CHECK:         moe.linear %{{.*}}, %{{.*}} scales %{{.*}} {quant = #moe.quant<q4, group_size = 32>} : (tensor<?x64xf32>, tensor<16x32xi8>, tensor<16x2xf16>) -> tensor<?x16xf32>
// CHECK:         moe.linear %{{.*}}, %{{.*}} scales %{{.*}} {quant = #moe.quant<f8e4m3>} : (tensor<?x64xf32>, tensor<16x64xf8E4M3FN>, tensor<16x1xf32>) -> tensor<?x16xf32>
// CHECK:         moe.sparse_block %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} scales %{{.*}}, %{{.*}}, %{{.*}} {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>}
// CHECK:         moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} scales %{{.*}} {quant = #moe.quant<q8, group_size = 32>}
// CHECK:         moe.grouped_swiglu %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} scales %{{.*}}, %{{.*}} {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>}
// CHECK:         moe.grouped_matmul_combine %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} scales %{{.*}} {quant = #moe.quant<q8, group_size = 32>}
// f8e4m3: one scale per row, so one attribute fits w1/w3 (K = 64) and w2 (K = 48).
// CHECK:         moe.sparse_block %{{.*}} {k = 2 : i64, quant = #moe.quant<f8e4m3>} : (tensor<?x64xf32>, tensor<4x64xbf16>, tensor<4x48x64xf8E4M3FN>, tensor<4x48x64xf8E4M3FN>, tensor<4x64x48xf8E4M3FN>, tensor<4x48x1xf32>, tensor<4x48x1xf32>, tensor<4x64x1xf32>) -> tensor<?x64xf32>
func.func @quantized(%x: tensor<?x64xf32>, %q4: tensor<16x32xi8>, %s4: tensor<16x2xf16>,
                     %f8: tensor<16x64xf8E4M3FN>, %s8: tensor<16x1xf32>, %g: tensor<4x64xbf16>,
                     %w1: tensor<4x32x64xi8>, %s1: tensor<4x32x2xf16>, %w2: tensor<4x64x32xi8>,
                     %s2: tensor<4x64x1xf16>, %o: tensor<5xi32>, %p: tensor<?xi32>,
                     %rw: tensor<?x2xf32>, %f1: tensor<4x48x64xf8E4M3FN>, %t1: tensor<4x48x1xf32>,
                     %f2: tensor<4x64x48xf8E4M3FN>, %t2: tensor<4x64x1xf32>) {
  %a = moe.linear %x, %q4 scales %s4 {quant = #moe.quant<q4, group_size = 32>} : (tensor<?x64xf32>, tensor<16x32xi8>, tensor<16x2xf16>) -> tensor<?x16xf32>
  %b = moe.linear %x, %f8 scales %s8 {quant = #moe.quant<f8e4m3>} : (tensor<?x64xf32>, tensor<16x64xf8E4M3FN>, tensor<16x1xf32>) -> tensor<?x16xf32>
  %c = moe.sparse_block %x, %g, %w1, %w1, %w2 scales %s1, %s1, %s2 {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>} : (tensor<?x64xf32>, tensor<4x64xbf16>, tensor<4x32x64xi8>, tensor<4x32x64xi8>, tensor<4x64x32xi8>, tensor<4x32x2xf16>, tensor<4x32x2xf16>, tensor<4x64x1xf16>) -> tensor<?x64xf32>
  %d = moe.grouped_matmul %x, %w1, %o scales %s1 {quant = #moe.quant<q8, group_size = 32>} : (tensor<?x64xf32>, tensor<4x32x64xi8>, tensor<5xi32>, tensor<4x32x2xf16>) -> tensor<?x32xf32>
  %e = moe.grouped_swiglu %x, %p, %o, %w1, %w1 scales %s1, %s1 {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>} : (tensor<?x64xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x32x64xi8>, tensor<4x32x64xi8>, tensor<4x32x2xf16>, tensor<4x32x2xf16>) -> tensor<?x32xf32>
  %f = moe.grouped_matmul_combine %e, %w2, %o, %p, %rw scales %s2 {quant = #moe.quant<q8, group_size = 32>} : (tensor<?x32xf32>, tensor<4x64x32xi8>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<4x64x1xf16>) -> tensor<?x64xf32>
  %h = moe.sparse_block %x, %g, %f1, %f1, %f2 scales %t1, %t1, %t2 {k = 2 : i64, quant = #moe.quant<f8e4m3>} : (tensor<?x64xf32>, tensor<4x64xbf16>, tensor<4x48x64xf8E4M3FN>, tensor<4x48x64xf8E4M3FN>, tensor<4x64x48xf8E4M3FN>, tensor<4x48x1xf32>, tensor<4x48x1xf32>, tensor<4x64x1xf32>) -> tensor<?x64xf32>
  return
}

// -----

// The batched step's ops: per-row positions, block tables, a paged pool [n_blocks, B, KVH, HD].
// CHECK-LABEL: func.func @step
// CHECK:         %[[Q:.*]] = moe.rope_at %{{.*}}, %[[P:.*]] {theta = 1.000000e+06 : f64} : (tensor<?x4x16xf32>, tensor<?xi32>) -> tensor<?x4x16xf32>
// CHECK:         %[[K:.*]] = moe.paged_kv_write %{{.*}}, %{{.*}}, %[[T:.*]], %[[P]] : (tensor<?x2x16xf32>, tensor<?x16x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x16x2x16xf32>
// CHECK:         moe.paged_attention %[[Q]], %[[K]], %{{.*}}, %[[T]], %[[P]] {scale = 2.500000e-01 : f64, sliding_window = 8 : i64} : (tensor<?x4x16xf32>, tensor<?x16x2x16xf32>, tensor<?x16x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x4x16xf32>
func.func @step(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %kp: tensor<?x16x2x16xf32>,
                %vp: tensor<?x16x2x16xf32>, %tables: tensor<?x4xi32>,
                %pos: tensor<?xi32>) -> tensor<?x4x16xf32> {
  %qr = moe.rope_at %q, %pos {theta = 1.0e+06 : f64}
      : (tensor<?x4x16xf32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  %k2 = moe.paged_kv_write %k, %kp, %tables, %pos
      : (tensor<?x2x16xf32>, tensor<?x16x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>)
      -> tensor<?x16x2x16xf32>
  %o = moe.paged_attention %qr, %k2, %vp, %tables, %pos {scale = 0.25 : f64, sliding_window = 8 : i64}
      : (tensor<?x4x16xf32>, tensor<?x16x2x16xf32>, tensor<?x16x2x16xf32>, tensor<?x4xi32>,
         tensor<?xi32>) -> tensor<?x4x16xf32>
  return %o : tensor<?x4x16xf32>
}

// -----

// Kernel calls in destination style, on tensors (one result per output) and on buffers (none).
// CHECK-LABEL: func.func @kernel_call
// CHECK:         %[[E:.*]] = tensor.empty(%{{.*}}) : tensor<?x64xf32>
// CHECK:         %[[Y:.*]] = moe.kernel_call "rms_norm" ins(%{{.*}}, %{{.*}} : tensor<?x64xf32>, tensor<64xbf16>) outs(%[[E]] : tensor<?x64xf32>) params {epsilon = 1.000000e-05 : f64} -> tensor<?x64xf32>
// CHECK:         moe.kernel_call "rope" ins(%[[Y]], %{{.*}} : tensor<?x64xf32>, index) outs(%[[E]] : tensor<?x64xf32>) -> tensor<?x64xf32>
// CHECK:         moe.kernel_call "copy" ins(%{{.*}} : memref<?xf32>) outs(%{{.*}} : memref<?xf32>){{$}}
// CHECK:         moe.kernel_call "fill" outs(%{{.*}} : memref<?xf32>) params {value = 0.000000e+00 : f32}{{$}}
func.func @kernel_call(%x: tensor<?x64xf32>, %w: tensor<64xbf16>, %start: index,
                       %a: memref<?xf32>, %b: memref<?xf32>) -> tensor<?x64xf32> {
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x64xf32>
  %e = tensor.empty(%t) : tensor<?x64xf32>
  %y = moe.kernel_call "rms_norm" ins(%x, %w : tensor<?x64xf32>, tensor<64xbf16>)
      outs(%e : tensor<?x64xf32>) params {epsilon = 1.0e-05 : f64} -> tensor<?x64xf32>
  %z = moe.kernel_call "rope" ins(%y, %start : tensor<?x64xf32>, index)
      outs(%e : tensor<?x64xf32>) -> tensor<?x64xf32>
  moe.kernel_call "copy" ins(%a : memref<?xf32>) outs(%b : memref<?xf32>)
  moe.kernel_call "fill" outs(%b : memref<?xf32>) params {value = 0.0 : f32}
  return %z : tensor<?x64xf32>
}
