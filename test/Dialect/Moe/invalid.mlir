// RUN: moe-opt %s -split-input-file -verify-diagnostics
// Every verifier error of the moe dialect, one case per message.

func.func @router_rank(%x: tensor<4x8x16xf32>, %g: tensor<8x16xf32>) {
  // expected-error @+1 {{expects the input to have rank 2, but it has rank 3.}}
  %0 = moe.router %x, %g : (tensor<4x8x16xf32>, tensor<8x16xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @router_gate_rank(%x: tensor<4x16xf32>, %g: tensor<16xf32>) {
  // expected-error @+1 {{expects the gate weight to have rank 2, but it has rank 1.}}
  %0 = moe.router %x, %g : (tensor<4x16xf32>, tensor<16xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @router_dynamic_experts(%x: tensor<4x16xf32>, %g: tensor<?x16xf32>) {
  // expected-error @+1 {{expects the number of experts to be static, because it is a model dimension.}}
  %0 = moe.router %x, %g : (tensor<4x16xf32>, tensor<?x16xf32>) -> tensor<4x?xf32>
  return
}

// -----

func.func @router_width(%x: tensor<4x16xf32>, %g: tensor<8x32xf32>) {
  // expected-error @+1 {{expects the gate weight's second dimension (32) to equal the input's last dimension (16).}}
  %0 = moe.router %x, %g : (tensor<4x16xf32>, tensor<8x32xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @router_tokens(%x: tensor<4x16xf32>, %g: tensor<8x16xf32>) {
  // expected-error @+1 {{expects the logits' token count (5) to equal the input's token count (4).}}
  %0 = moe.router %x, %g : (tensor<4x16xf32>, tensor<8x16xf32>) -> tensor<5x8xf32>
  return
}

// -----

func.func @router_experts(%x: tensor<?x16xf32>, %g: tensor<8x16xf32>) {
  // expected-error @+1 {{expects the logits' second dimension (4) to equal the number of experts (8).}}
  %0 = moe.router %x, %g : (tensor<?x16xf32>, tensor<8x16xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @router_bf16_logits(%x: tensor<?x16xf32>, %g: tensor<8x16xf32>) {
  // expected-error @+1 {{result #0 must be ranked tensor of 32-bit float values}}
  %0 = moe.router %x, %g : (tensor<?x16xf32>, tensor<8x16xf32>) -> tensor<?x8xbf16>
  return
}

// -----

func.func @topk_k_zero(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{attribute 'k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %w, %i = moe.top_k_gating %l {k = 0 : i64} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  return
}

// -----

func.func @topk_k_too_big(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{expects k (9) to be at most the number of experts (8).}}
  %w, %i = moe.top_k_gating %l {k = 9 : i64} : (tensor<?x8xf32>) -> (tensor<?x9xf32>, tensor<?x9xi32>)
  return
}

// -----

func.func @topk_rank(%l: tensor<8xf32>) {
  // expected-error @+1 {{expects the logits to have rank 2, but it has rank 1.}}
  %w, %i = moe.top_k_gating %l {k = 2 : i64} : (tensor<8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  return
}

// -----

func.func @topk_dynamic_experts(%l: tensor<4x?xf32>) {
  // expected-error @+1 {{expects the number of experts to be static, because it is a model dimension.}}
  %w, %i = moe.top_k_gating %l {k = 2 : i64} : (tensor<4x?xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
  return
}

// -----

func.func @topk_weights_tokens(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{expects the weights' token count (3) to equal the logits' token count (4).}}
  %w, %i = moe.top_k_gating %l {k = 2 : i64} : (tensor<4x8xf32>) -> (tensor<3x2xf32>, tensor<4x2xi32>)
  return
}

// -----

func.func @topk_ids_tokens(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{expects the expert ids' token count (5) to equal the logits' token count (4).}}
  %w, %i = moe.top_k_gating %l {k = 2 : i64} : (tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<5x2xi32>)
  return
}

// -----

func.func @topk_weights_k(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{expects the weights' second dimension (3) to equal k (2).}}
  %w, %i = moe.top_k_gating %l {k = 2 : i64} : (tensor<?x8xf32>) -> (tensor<?x3xf32>, tensor<?x2xi32>)
  return
}

// -----

func.func @topk_ids_k(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{expects the expert ids' second dimension (1) to equal k (2).}}
  %w, %i = moe.top_k_gating %l {k = 2 : i64} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x1xi32>)
  return
}

// -----

func.func @topk_ids_i64(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{result #1 must be ranked tensor of 32-bit signless integer values}}
  %w, %i = moe.top_k_gating %l {k = 2 : i64} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>)
  return
}

// -----

func.func @dispatch_rank(%i: tensor<?xi32>) {
  // expected-error @+1 {{expects the expert ids to have rank 2, but it has rank 1.}}
  %p, %o = moe.dispatch %i {num_experts = 8 : i64} : (tensor<?xi32>) -> (tensor<?xi32>, tensor<9xi32>)
  return
}

// -----

func.func @dispatch_perm_rank(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{expects the permutation to have rank 1, but it has rank 2.}}
  %p, %o = moe.dispatch %i {num_experts = 8 : i64} : (tensor<?x2xi32>) -> (tensor<?x2xi32>, tensor<9xi32>)
  return
}

// -----

func.func @dispatch_dynamic_k(%i: tensor<4x?xi32>) {
  // expected-error @+1 {{expects the expert ids' second dimension (k) to be static, because it is a model dimension.}}
  %p, %o = moe.dispatch %i {num_experts = 8 : i64} : (tensor<4x?xi32>) -> (tensor<?xi32>, tensor<9xi32>)
  return
}

// -----

func.func @dispatch_k_too_big(%i: tensor<?x3xi32>) {
  // expected-error @+1 {{expects k (3) to be at most the number of experts (2).}}
  %p, %o = moe.dispatch %i {num_experts = 2 : i64} : (tensor<?x3xi32>) -> (tensor<?xi32>, tensor<3xi32>)
  return
}

// -----

func.func @dispatch_perm_size(%i: tensor<4x2xi32>) {
  // expected-error @+1 {{expects the permutation's size (7) to equal tokens times k (8).}}
  %p, %o = moe.dispatch %i {num_experts = 8 : i64} : (tensor<4x2xi32>) -> (tensor<7xi32>, tensor<9xi32>)
  return
}

// -----

func.func @dispatch_offsets_rank(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{expects the expert offsets to have rank 1, but it has rank 2.}}
  %p, %o = moe.dispatch %i {num_experts = 8 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<9x1xi32>)
  return
}

// -----

func.func @dispatch_offsets_dynamic(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{expects the expert offsets' size to be static, because it is a model dimension.}}
  %p, %o = moe.dispatch %i {num_experts = 8 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_offsets_size(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{expects the expert offsets' size (8) to equal the number of experts plus one (9).}}
  %p, %o = moe.dispatch %i {num_experts = 8 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<8xi32>)
  return
}

// -----

func.func @dispatch_zero_experts(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{attribute 'num_experts' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %p, %o = moe.dispatch %i {num_experts = 0 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<1xi32>)
  return
}

// -----

func.func @gather_rank(%x: tensor<?xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the input to have rank 2, but it has rank 1.}}
  %0 = moe.gather_rows %x, %p {k = 2 : i64} : (tensor<?xf32>, tensor<?xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gather_perm_rank(%x: tensor<?x16xf32>, %p: tensor<?x1xi32>) {
  // expected-error @+1 {{expects the permutation to have rank 1, but it has rank 2.}}
  %0 = moe.gather_rows %x, %p {k = 2 : i64} : (tensor<?x16xf32>, tensor<?x1xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gather_result_rank(%x: tensor<?x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the result to have rank 2, but it has rank 1.}}
  %0 = moe.gather_rows %x, %p {k = 2 : i64} : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?xf32>
  return
}

// -----

func.func @gather_elt(%x: tensor<?x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the result to have the element type of the input ('f32'), but it has 'bf16'.}}
  %0 = moe.gather_rows %x, %p {k = 2 : i64} : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?x16xbf16>
  return
}

// -----

func.func @gather_rows(%x: tensor<?x16xf32>, %p: tensor<6xi32>) {
  // expected-error @+1 {{expects the result's row count (5) to equal the permutation's size (6).}}
  %0 = moe.gather_rows %x, %p {k = 2 : i64} : (tensor<?x16xf32>, tensor<6xi32>) -> tensor<5x16xf32>
  return
}

// -----

func.func @gather_perm_size(%x: tensor<4x16xf32>, %p: tensor<6xi32>) {
  // expected-error @+1 {{expects the permutation's size (6) to equal tokens times k (8).}}
  %0 = moe.gather_rows %x, %p {k = 2 : i64} : (tensor<4x16xf32>, tensor<6xi32>) -> tensor<6x16xf32>
  return
}

// -----

func.func @gather_width(%x: tensor<?x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the result's last dimension (32) to equal the input's last dimension (16).}}
  %0 = moe.gather_rows %x, %p {k = 2 : i64} : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @gm_rows_rank(%r: tensor<16xf32>, %w: tensor<4x24x16xbf16>, %o: tensor<5xi32>) {
  // expected-error @+1 {{expects the rows to have rank 2, but it has rank 1.}}
  %0 = moe.grouped_matmul %r, %w, %o : (tensor<16xf32>, tensor<4x24x16xbf16>, tensor<5xi32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @gm_w_rank(%r: tensor<?x16xf32>, %w: tensor<24x16xbf16>, %o: tensor<5xi32>) {
  // expected-error @+1 {{expects the expert weights to have rank 3, but it has rank 2.}}
  %0 = moe.grouped_matmul %r, %w, %o : (tensor<?x16xf32>, tensor<24x16xbf16>, tensor<5xi32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @gm_result_rank(%r: tensor<?x16xf32>, %w: tensor<4x24x16xbf16>, %o: tensor<5xi32>) {
  // expected-error @+1 {{expects the result to have rank 2, but it has rank 3.}}
  %0 = moe.grouped_matmul %r, %w, %o : (tensor<?x16xf32>, tensor<4x24x16xbf16>, tensor<5xi32>) -> tensor<?x24x1xf32>
  return
}

// -----

func.func @gm_dyn_experts(%r: tensor<?x16xf32>, %w: tensor<?x24x16xbf16>, %o: tensor<5xi32>) {
  // expected-error @+1 {{expects the number of experts to be static, because it is a model dimension.}}
  %0 = moe.grouped_matmul %r, %w, %o : (tensor<?x16xf32>, tensor<?x24x16xbf16>, tensor<5xi32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @gm_offsets(%r: tensor<?x16xf32>, %w: tensor<4x24x16xbf16>, %o: tensor<4xi32>) {
  // expected-error @+1 {{expects the expert offsets' size (4) to equal the number of experts plus one (5).}}
  %0 = moe.grouped_matmul %r, %w, %o : (tensor<?x16xf32>, tensor<4x24x16xbf16>, tensor<4xi32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @gm_elt(%r: tensor<?x16xf32>, %w: tensor<4x24x16xbf16>, %o: tensor<5xi32>) {
  // expected-error @+1 {{expects the result to have the element type of the rows ('f32'), but it has 'bf16'.}}
  %0 = moe.grouped_matmul %r, %w, %o : (tensor<?x16xf32>, tensor<4x24x16xbf16>, tensor<5xi32>) -> tensor<?x24xbf16>
  return
}

// -----

func.func @gm_k(%r: tensor<?x16xf32>, %w: tensor<4x24x8xbf16>, %o: tensor<5xi32>) {
  // expected-error @+1 {{expects the expert weights' last dimension (8) to equal the rows' last dimension (16).}}
  %0 = moe.grouped_matmul %r, %w, %o : (tensor<?x16xf32>, tensor<4x24x8xbf16>, tensor<5xi32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @gm_result_rows(%r: tensor<6x16xf32>, %w: tensor<4x24x16xbf16>, %o: tensor<5xi32>) {
  // expected-error @+1 {{expects the result's row count (7) to equal the rows' count (6).}}
  %0 = moe.grouped_matmul %r, %w, %o : (tensor<6x16xf32>, tensor<4x24x16xbf16>, tensor<5xi32>) -> tensor<7x24xf32>
  return
}

// -----

func.func @gm_result_n(%r: tensor<?x16xf32>, %w: tensor<4x24x16xbf16>, %o: tensor<5xi32>) {
  // expected-error @+1 {{expects the result's last dimension (25) to equal the expert weights' output dimension (24).}}
  %0 = moe.grouped_matmul %r, %w, %o : (tensor<?x16xf32>, tensor<4x24x16xbf16>, tensor<5xi32>) -> tensor<?x25xf32>
  return
}

// -----

func.func @swiglu_types(%g: tensor<?x24xf32>, %u: tensor<?x25xf32>) {
  // expected-error @+1 {{expects the gate, the up projection and the result to have the same type.}}
  %0 = moe.swiglu %g, %u : (tensor<?x24xf32>, tensor<?x25xf32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @combine_out_rank(%e: tensor<16xf32>, %p: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects the expert outputs to have rank 2, but it has rank 1.}}
  %0 = moe.combine %e, %p, %w : (tensor<16xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_perm_rank(%e: tensor<?x16xf32>, %p: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects the permutation to have rank 1, but it has rank 2.}}
  %0 = moe.combine %e, %p, %w : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_w_rank(%e: tensor<?x16xf32>, %p: tensor<?xi32>, %w: tensor<?xf32>) {
  // expected-error @+1 {{expects the routing weights to have rank 2, but it has rank 1.}}
  %0 = moe.combine %e, %p, %w : (tensor<?x16xf32>, tensor<?xi32>, tensor<?xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_result_rank(%e: tensor<?x16xf32>, %p: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects the result to have rank 2, but it has rank 1.}}
  %0 = moe.combine %e, %p, %w : (tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?xf32>
  return
}

// -----

func.func @combine_dyn_k(%e: tensor<?x16xf32>, %p: tensor<?xi32>, %w: tensor<?x?xf32>) {
  // expected-error @+1 {{expects the routing weights' second dimension (k) to be static, because it is a model dimension.}}
  %0 = moe.combine %e, %p, %w : (tensor<?x16xf32>, tensor<?xi32>, tensor<?x?xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_elt(%e: tensor<?x16xf32>, %p: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects the result to have the element type of the expert outputs ('f32'), but it has 'f16'.}}
  %0 = moe.combine %e, %p, %w : (tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x16xf16>
  return
}

// -----

func.func @combine_perm_size(%e: tensor<8x16xf32>, %p: tensor<6xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects the permutation's size (6) to equal the expert outputs' row count (8).}}
  %0 = moe.combine %e, %p, %w : (tensor<8x16xf32>, tensor<6xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_rows(%e: tensor<6x16xf32>, %p: tensor<6xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{expects the expert outputs' row count (6) to equal tokens times k (8).}}
  %0 = moe.combine %e, %p, %w : (tensor<6x16xf32>, tensor<6xi32>, tensor<4x2xf32>) -> tensor<4x16xf32>
  return
}

// -----

func.func @combine_tokens(%e: tensor<?x16xf32>, %p: tensor<?xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{expects the result's token count (3) to equal the routing weights' token count (4).}}
  %0 = moe.combine %e, %p, %w : (tensor<?x16xf32>, tensor<?xi32>, tensor<4x2xf32>) -> tensor<3x16xf32>
  return
}

// -----

func.func @combine_width(%e: tensor<?x16xf32>, %p: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects the result's last dimension (32) to equal the expert outputs' last dimension (16).}}
  %0 = moe.combine %e, %p, %w : (tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @sb_x_rank(%x: tensor<16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expects the input to have rank 2, but it has rank 1.}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_w2_rank(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<16x24xf32>) {
  // expected-error @+1 {{expects w2 to have rank 3, but it has rank 2.}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_w1_w3(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xbf16>, %w2: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expects w1 and w3 to have the same type.}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xbf16>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_w1_rank(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<24x16xf32>, %w3: tensor<24x16xf32>, %w2: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expects w1 to have rank 3, but it has rank 2.}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<24x16xf32>, tensor<24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_w1_d(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x8xf32>, %w3: tensor<4x24x8xf32>, %w2: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expects w1's last dimension (8) to equal the input's last dimension (16).}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x8xf32>, tensor<4x24x8xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_k(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expects k (5) to be at most the number of experts (4).}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 5 : i64} : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_gate_experts(%x: tensor<?x16xf32>, %g: tensor<3x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expects the gate weight's expert count (3) to equal w1's expert count (4).}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<3x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_gate_width(%x: tensor<?x16xf32>, %g: tensor<4x8xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expects the gate weight's second dimension (8) to equal the input's last dimension (16).}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<4x8xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_w2_experts(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<2x16x24xf32>) {
  // expected-error @+1 {{expects w2's expert count (2) to equal w1's expert count (4).}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<2x16x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_w2_out(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<4x8x24xf32>) {
  // expected-error @+1 {{expects w2's output dimension (8) to equal the input's last dimension (16).}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x8x24xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_w2_in(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<4x16x20xf32>) {
  // expected-error @+1 {{expects w2's last dimension (20) to equal w1's output dimension (24).}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x20xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @sb_elt(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expects the result to have the element type of the input ('f32'), but it has 'bf16'.}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xbf16>
  return
}

// -----

func.func @sb_tokens(%x: tensor<4x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expects the result's token count (5) to equal the input's token count (4).}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<5x16xf32>
  return
}

// -----

func.func @sb_width(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>, %w2: tensor<4x16x24xf32>) {
  // expected-error @+1 {{expects the result's last dimension (12) to equal the input's last dimension (16).}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 {k = 2 : i64} : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x12xf32>
  return
}

// -----

func.func @gs_x_rank(%x: tensor<16xf32>, %p: tensor<?xi32>, %o: tensor<5xi32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>) {
  // expected-error @+1 {{expects the input to have rank 2, but it has rank 1.}}
  %0 = moe.grouped_swiglu %x, %p, %o, %w1, %w3 {k = 2 : i64} : (tensor<16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @gs_w1_w3(%x: tensor<?x16xf32>, %p: tensor<?xi32>, %o: tensor<5xi32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x20x16xf32>) {
  // expected-error @+1 {{expects w1 and w3 to have the same type.}}
  %0 = moe.grouped_swiglu %x, %p, %o, %w1, %w3 {k = 2 : i64} : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x20x16xf32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @gs_offsets(%x: tensor<?x16xf32>, %p: tensor<?xi32>, %o: tensor<6xi32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>) {
  // expected-error @+1 {{expects the expert offsets' size (6) to equal the number of experts plus one (5).}}
  %0 = moe.grouped_swiglu %x, %p, %o, %w1, %w3 {k = 2 : i64} : (tensor<?x16xf32>, tensor<?xi32>, tensor<6xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @gs_perm(%x: tensor<3x16xf32>, %p: tensor<5xi32>, %o: tensor<5xi32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>) {
  // expected-error @+1 {{expects the permutation's size (5) to equal tokens times k (6).}}
  %0 = moe.grouped_swiglu %x, %p, %o, %w1, %w3 {k = 2 : i64} : (tensor<3x16xf32>, tensor<5xi32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>) -> tensor<?x24xf32>
  return
}

// -----

func.func @gs_rows(%x: tensor<?x16xf32>, %p: tensor<6xi32>, %o: tensor<5xi32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>) {
  // expected-error @+1 {{expects the result's row count (4) to equal the permutation's size (6).}}
  %0 = moe.grouped_swiglu %x, %p, %o, %w1, %w3 {k = 2 : i64} : (tensor<?x16xf32>, tensor<6xi32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>) -> tensor<4x24xf32>
  return
}

// -----

func.func @gs_width(%x: tensor<?x16xf32>, %p: tensor<?xi32>, %o: tensor<5xi32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>) {
  // expected-error @+1 {{expects the result's last dimension (16) to equal w1's output dimension (24).}}
  %0 = moe.grouped_swiglu %x, %p, %o, %w1, %w3 {k = 2 : i64} : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gs_elt(%x: tensor<?x16xf32>, %p: tensor<?xi32>, %o: tensor<5xi32>, %w1: tensor<4x24x16xf32>, %w3: tensor<4x24x16xf32>) {
  // expected-error @+1 {{expects the result to have the element type of the input ('f32'), but it has 'f16'.}}
  %0 = moe.grouped_swiglu %x, %p, %o, %w1, %w3 {k = 2 : i64} : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x24x16xf32>, tensor<4x24x16xf32>) -> tensor<?x24xf16>
  return
}

// -----

func.func @gc_w2_rank(%h: tensor<?x24xf32>, %w2: tensor<16x24xf32>, %o: tensor<5xi32>, %p: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects w2 to have rank 3, but it has rank 2.}}
  %0 = moe.grouped_matmul_combine %h, %w2, %o, %p, %w : (tensor<?x24xf32>, tensor<16x24xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gc_dyn_k(%h: tensor<?x24xf32>, %w2: tensor<4x16x24xf32>, %o: tensor<5xi32>, %p: tensor<?xi32>, %w: tensor<?x?xf32>) {
  // expected-error @+1 {{expects the routing weights' second dimension (k) to be static, because it is a model dimension.}}
  %0 = moe.grouped_matmul_combine %h, %w2, %o, %p, %w : (tensor<?x24xf32>, tensor<4x16x24xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x?xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gc_f(%h: tensor<?x20xf32>, %w2: tensor<4x16x24xf32>, %o: tensor<5xi32>, %p: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects w2's last dimension (24) to equal the rows' last dimension (20).}}
  %0 = moe.grouped_matmul_combine %h, %w2, %o, %p, %w : (tensor<?x20xf32>, tensor<4x16x24xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gc_perm(%h: tensor<6x24xf32>, %w2: tensor<4x16x24xf32>, %o: tensor<5xi32>, %p: tensor<5xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects the permutation's size (5) to equal the rows' count (6).}}
  %0 = moe.grouped_matmul_combine %h, %w2, %o, %p, %w : (tensor<6x24xf32>, tensor<4x16x24xf32>, tensor<5xi32>, tensor<5xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gc_rows(%h: tensor<6x24xf32>, %w2: tensor<4x16x24xf32>, %o: tensor<5xi32>, %p: tensor<6xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{expects the rows' count (6) to equal tokens times k (8).}}
  %0 = moe.grouped_matmul_combine %h, %w2, %o, %p, %w : (tensor<6x24xf32>, tensor<4x16x24xf32>, tensor<5xi32>, tensor<6xi32>, tensor<4x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gc_tokens(%h: tensor<?x24xf32>, %w2: tensor<4x16x24xf32>, %o: tensor<5xi32>, %p: tensor<?xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{expects the result's token count (2) to equal the routing weights' token count (4).}}
  %0 = moe.grouped_matmul_combine %h, %w2, %o, %p, %w : (tensor<?x24xf32>, tensor<4x16x24xf32>, tensor<5xi32>, tensor<?xi32>, tensor<4x2xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @gc_width(%h: tensor<?x24xf32>, %w2: tensor<4x16x24xf32>, %o: tensor<5xi32>, %p: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{expects the result's last dimension (8) to equal w2's output dimension (16).}}
  %0 = moe.grouped_matmul_combine %h, %w2, %o, %p, %w : (tensor<?x24xf32>, tensor<4x16x24xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x8xf32>
  return
}

// -----

func.func @emb_rank(%t: tensor<512xf32>, %i: tensor<?xi32>) {
  // expected-error @+1 {{expects the table to have rank 2, but it has rank 1.}}
  %0 = moe.embedding %t, %i : (tensor<512xf32>, tensor<?xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @emb_ids_rank(%t: tensor<512x16xf32>, %i: tensor<?x1xi32>) {
  // expected-error @+1 {{expects the ids to have rank 1, but it has rank 2.}}
  %0 = moe.embedding %t, %i : (tensor<512x16xf32>, tensor<?x1xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @emb_tokens(%t: tensor<512x16xf32>, %i: tensor<3xi32>) {
  // expected-error @+1 {{expects the result's token count (4) to equal the ids' size (3).}}
  %0 = moe.embedding %t, %i : (tensor<512x16xf32>, tensor<3xi32>) -> tensor<4x16xf32>
  return
}

// -----

func.func @emb_width(%t: tensor<512x16xf32>, %i: tensor<?xi32>) {
  // expected-error @+1 {{expects the result's last dimension (8) to equal the table's last dimension (16).}}
  %0 = moe.embedding %t, %i : (tensor<512x16xf32>, tensor<?xi32>) -> tensor<?x8xf32>
  return
}

// -----

func.func @rms_weight_rank(%x: tensor<?x16xf32>, %w: tensor<1x16xf32>) {
  // expected-error @+1 {{expects the weight to have rank 1, but it has rank 2.}}
  %0 = moe.rms_norm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<?x16xf32>, tensor<1x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @rms_eps(%x: tensor<?x16xf32>, %w: tensor<16xf32>) {
  // expected-error @+1 {{expects a non-negative epsilon.}}
  %0 = moe.rms_norm %x, %w {epsilon = -1.0 : f64} : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @rms_result(%x: tensor<?x16xf32>, %w: tensor<16xf32>) {
  // expected-error @+1 {{expects the result to have the input's type.}}
  %0 = moe.rms_norm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xbf16>
  return
}

// -----

func.func @rms_size(%x: tensor<?x16xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{expects the weight's size (8) to equal the input's last dimension (16).}}
  %0 = moe.rms_norm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<?x16xf32>, tensor<8xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @rms_scalar(%x: tensor<f32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{expects the input to have rank at least 1.}}
  %0 = moe.rms_norm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<f32>, tensor<8xf32>) -> tensor<f32>
  return
}

// -----

func.func @lin_rank(%x: tensor<?x16xf32>, %w: tensor<16xf32>) {
  // expected-error @+1 {{expects the weight to have rank 2, but it has rank 1.}}
  %0 = moe.linear %x, %w : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @lin_elt(%x: tensor<?x16xf32>, %w: tensor<8x16xbf16>) {
  // expected-error @+1 {{expects the result to have the element type of the input ('f32'), but it has 'bf16'.}}
  %0 = moe.linear %x, %w : (tensor<?x16xf32>, tensor<8x16xbf16>) -> tensor<?x8xbf16>
  return
}

// -----

func.func @lin_k(%x: tensor<?x16xf32>, %w: tensor<8x12xbf16>) {
  // expected-error @+1 {{expects the weight's last dimension (12) to equal the input's last dimension (16).}}
  %0 = moe.linear %x, %w : (tensor<?x16xf32>, tensor<8x12xbf16>) -> tensor<?x8xf32>
  return
}

// -----

func.func @lin_rows(%x: tensor<3x16xf32>, %w: tensor<8x16xbf16>) {
  // expected-error @+1 {{expects the result's row count (4) to equal the input's row count (3).}}
  %0 = moe.linear %x, %w : (tensor<3x16xf32>, tensor<8x16xbf16>) -> tensor<4x8xf32>
  return
}

// -----

func.func @lin_n(%x: tensor<?x16xf32>, %w: tensor<8x16xbf16>) {
  // expected-error @+1 {{expects the result's last dimension (9) to equal the weight's output dimension (8).}}
  %0 = moe.linear %x, %w : (tensor<?x16xf32>, tensor<8x16xbf16>) -> tensor<?x9xf32>
  return
}

// -----

func.func @lin_int(%x: tensor<?x16xf32>, %w: tensor<8x16xi8>) {
  // expected-error @+1 {{expects the weight to be an f32, bf16 or f16 tensor unless the op has a quant attribute, but its element type is 'i8'.}}
  %0 = moe.linear %x, %w : (tensor<?x16xf32>, tensor<8x16xi8>) -> tensor<?x8xf32>
  return
}

// -----

func.func @rope_rank(%x: tensor<?x64xf32>, %p: index) {
  // expected-error @+1 {{expects the input to have rank 3, but it has rank 2.}}
  %0 = moe.rope %x, %p {theta = 1.0e+04 : f64} : (tensor<?x64xf32>, index) -> tensor<?x64xf32>
  return
}

// -----

func.func @rope_result(%x: tensor<?x4x16xf32>, %p: index) {
  // expected-error @+1 {{expects the result to have the input's type.}}
  %0 = moe.rope %x, %p {theta = 1.0e+04 : f64} : (tensor<?x4x16xf32>, index) -> tensor<?x4x8xf32>
  return
}

// -----

func.func @rope_dyn_hd(%x: tensor<?x4x?xf32>, %p: index) {
  // expected-error @+1 {{expects the head dimension to be static, because it is a model dimension.}}
  %0 = moe.rope %x, %p {theta = 1.0e+04 : f64} : (tensor<?x4x?xf32>, index) -> tensor<?x4x?xf32>
  return
}

// -----

func.func @rope_odd(%x: tensor<?x4x15xf32>, %p: index) {
  // expected-error @+1 {{expects an even head dimension, but it is 15.}}
  %0 = moe.rope %x, %p {theta = 1.0e+04 : f64} : (tensor<?x4x15xf32>, index) -> tensor<?x4x15xf32>
  return
}

// -----

func.func @rope_theta(%x: tensor<?x4x16xf32>, %p: index) {
  // expected-error @+1 {{expects a positive theta.}}
  %0 = moe.rope %x, %p {theta = 0.0 : f64} : (tensor<?x4x16xf32>, index) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @att_q_rank(%q: tensor<?x64xf32>, %k: tensor<64x2x16xf32>, %v: tensor<64x2x16xf32>, %p: index) {
  // expected-error @+1 {{expects the query to have rank 3, but it has rank 2.}}
  %0 = moe.attention %q, %k, %v, %p {scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<64x2x16xf32>, tensor<64x2x16xf32>, index) -> tensor<?x64xf32>
  return
}

// -----

func.func @att_k_rank(%q: tensor<?x4x16xf32>, %k: tensor<64x32xf32>, %v: tensor<64x32xf32>, %p: index) {
  // expected-error @+1 {{expects the key cache to have rank 3, but it has rank 2.}}
  %0 = moe.attention %q, %k, %v, %p {scale = 0.25 : f64} : (tensor<?x4x16xf32>, tensor<64x32xf32>, tensor<64x32xf32>, index) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @att_kv_types(%q: tensor<?x4x16xf32>, %k: tensor<64x2x16xf32>, %v: tensor<32x2x16xf32>, %p: index) {
  // expected-error @+1 {{expects the key and value caches to have the same type.}}
  %0 = moe.attention %q, %k, %v, %p {scale = 0.25 : f64} : (tensor<?x4x16xf32>, tensor<64x2x16xf32>, tensor<32x2x16xf32>, index) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @att_result(%q: tensor<?x4x16xf32>, %k: tensor<64x2x16xf32>, %v: tensor<64x2x16xf32>, %p: index) {
  // expected-error @+1 {{expects the result to have the query's type.}}
  %0 = moe.attention %q, %k, %v, %p {scale = 0.25 : f64} : (tensor<?x4x16xf32>, tensor<64x2x16xf32>, tensor<64x2x16xf32>, index) -> tensor<?x4x8xf32>
  return
}

// -----

func.func @att_scale(%q: tensor<?x4x16xf32>, %k: tensor<64x2x16xf32>, %v: tensor<64x2x16xf32>, %p: index) {
  // expected-error @+1 {{expects a positive scale.}}
  %0 = moe.attention %q, %k, %v, %p {scale = 0.0 : f64} : (tensor<?x4x16xf32>, tensor<64x2x16xf32>, tensor<64x2x16xf32>, index) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @att_dyn_heads(%q: tensor<?x?x16xf32>, %k: tensor<64x2x16xf32>, %v: tensor<64x2x16xf32>, %p: index) {
  // expected-error @+1 {{expects the number of query heads to be static, because it is a model dimension.}}
  %0 = moe.attention %q, %k, %v, %p {scale = 0.25 : f64} : (tensor<?x?x16xf32>, tensor<64x2x16xf32>, tensor<64x2x16xf32>, index) -> tensor<?x?x16xf32>
  return
}

// -----

func.func @att_hd(%q: tensor<?x4x16xf32>, %k: tensor<64x2x8xf32>, %v: tensor<64x2x8xf32>, %p: index) {
  // expected-error @+1 {{expects the key cache's head dimension (8) to equal the query's head dimension (16).}}
  %0 = moe.attention %q, %k, %v, %p {scale = 0.25 : f64} : (tensor<?x4x16xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, index) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @att_gqa(%q: tensor<?x4x16xf32>, %k: tensor<64x3x16xf32>, %v: tensor<64x3x16xf32>, %p: index) {
  // expected-error @+1 {{expects the number of query heads (4) to be a multiple of the number of key/value heads (3).}}
  %0 = moe.attention %q, %k, %v, %p {scale = 0.25 : f64} : (tensor<?x4x16xf32>, tensor<64x3x16xf32>, tensor<64x3x16xf32>, index) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @att_window(%q: tensor<?x4x16xf32>, %k: tensor<64x2x16xf32>, %v: tensor<64x2x16xf32>, %p: index) {
  // expected-error @+1 {{attribute 'sliding_window' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %0 = moe.attention %q, %k, %v, %p {scale = 0.25 : f64, sliding_window = 0 : i64} : (tensor<?x4x16xf32>, tensor<64x2x16xf32>, tensor<64x2x16xf32>, index) -> tensor<?x4x16xf32>
  return
}

// -----
// Quantized weights (#moe.quant): data, scales and format must agree.

func.func @quant_without_scales(%x: tensor<4x64xf32>, %w: tensor<16x64xi8>) {
  // expected-error @+1 {{expects scales for the weight, because the op has a quant attribute.}}
  %0 = moe.linear %x, %w {quant = #moe.quant<q8, group_size = 32>} : (tensor<4x64xf32>, tensor<16x64xi8>) -> tensor<4x16xf32>
  return
}

// -----

func.func @scales_without_quant(%x: tensor<4x64xf32>, %w: tensor<16x64xbf16>, %s: tensor<16x2xf16>) {
  // expected-error @+1 {{expects no scales for the weight, because it has no quant attribute.}}
  %0 = moe.linear %x, %w scales %s : (tensor<4x64xf32>, tensor<16x64xbf16>, tensor<16x2xf16>) -> tensor<4x16xf32>
  return
}

// -----

func.func @quant_data_type(%x: tensor<4x64xf32>, %w: tensor<16x64xf8E4M3FN>, %s: tensor<16x2xf16>) {
  // expected-error @+1 {{expects the weight to hold 'i8' data for q8, but its element type is 'f8E4M3FN'.}}
  %0 = moe.linear %x, %w scales %s {quant = #moe.quant<q8, group_size = 32>} : (tensor<4x64xf32>, tensor<16x64xf8E4M3FN>, tensor<16x2xf16>) -> tensor<4x16xf32>
  return
}

// -----

func.func @quant_scale_type(%x: tensor<4x64xf32>, %w: tensor<16x64xf8E4M3FN>, %s: tensor<16x1xf16>) {
  // expected-error @+1 {{expects the scales of the weight to be 'f32' for f8e4m3, but they are 'f16'.}}
  %0 = moe.linear %x, %w scales %s {quant = #moe.quant<f8e4m3>} : (tensor<4x64xf32>, tensor<16x64xf8E4M3FN>, tensor<16x1xf16>) -> tensor<4x16xf32>
  return
}

// -----

func.func @quant_scale_rows(%x: tensor<4x64xf32>, %w: tensor<16x64xi8>, %s: tensor<8x2xf16>) {
  // expected-error @+1 {{expects dimension 0 of the scales of the weight (8) to equal dimension 0 of the weight (16).}}
  %0 = moe.linear %x, %w scales %s {quant = #moe.quant<q8, group_size = 32>} : (tensor<4x64xf32>, tensor<16x64xi8>, tensor<8x2xf16>) -> tensor<4x16xf32>
  return
}

// -----

func.func @quant_scale_groups(%x: tensor<4x64xf32>, %w: tensor<16x32xi8>, %s: tensor<16x1xf16>) {
  // expected-error @+1 {{expects the last dimension of the scales of the weight (1) to equal K / group size (2).}}
  %0 = moe.linear %x, %w scales %s {quant = #moe.quant<q4, group_size = 32>} : (tensor<4x64xf32>, tensor<16x32xi8>, tensor<16x1xf16>) -> tensor<4x16xf32>
  return
}

// -----

func.func @quant_q4_width(%x: tensor<4x64xf32>, %w: tensor<16x64xi8>, %s: tensor<16x4xf16>) {
  // expected-error @+1 {{expects the weight's last dimension (128) to equal the input's last dimension (64).}}
  %0 = moe.linear %x, %w scales %s {quant = #moe.quant<q4, group_size = 32>} : (tensor<4x64xf32>, tensor<16x64xi8>, tensor<16x4xf16>) -> tensor<4x16xf32>
  return
}

// -----

func.func @quant_partial_group(%x: tensor<4x48xf32>, %w: tensor<16x48xi8>, %s: tensor<16x1xf16>) {
  // expected-error @+1 {{expects the last dimension of the weight (K = 48 elements) to be a multiple of the group size (32).}}
  %0 = moe.linear %x, %w scales %s {quant = #moe.quant<q8, group_size = 32>} : (tensor<4x48xf32>, tensor<16x48xi8>, tensor<16x1xf16>) -> tensor<4x16xf32>
  return
}

// -----

func.func @quant_group_size(%x: tensor<4x64xf32>, %w: tensor<16x64xi8>, %s: tensor<16x4xf16>) {
  // expected-error @+1 {{expects group size 32 for q8 (the format's layout), but it is 16.}}
  %0 = moe.linear %x, %w scales %s {quant = #moe.quant<q8, group_size = 16>} : (tensor<4x64xf32>, tensor<16x64xi8>, tensor<16x4xf16>) -> tensor<4x16xf32>
  return
}

// -----

// f8e4m3 has one scale per output row, whatever K is: a group size would be a second truth.
func.func @quant_f8_group_size(%x: tensor<4x64xf32>, %w: tensor<16x64xf8E4M3FN>, %s: tensor<16x1xf32>) {
  // expected-error @+1 {{expects no group size for f8e4m3 (one scale per output row, whatever K is), but it is 64.}}
  %0 = moe.linear %x, %w scales %s {quant = #moe.quant<f8e4m3, group_size = 64>} : (tensor<4x64xf32>, tensor<16x64xf8E4M3FN>, tensor<16x1xf32>) -> tensor<4x16xf32>
  return
}

// -----

func.func @quant_f8_block_scales(%x: tensor<?x32xf32>, %g: tensor<4x32xbf16>, %w1: tensor<4x48x32xf8E4M3FN>, %w2: tensor<4x32x48xf8E4M3FN>, %s1: tensor<4x48x1xf32>, %s2: tensor<4x32x2xf32>) {
  // expected-error @+1 {{expects the last dimension of the scales of w2 (2) to equal K / group size (1).}}
  %0 = moe.sparse_block %x, %g, %w1, %w1, %w2 scales %s1, %s1, %s2 {k = 2 : i64, quant = #moe.quant<f8e4m3>} : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x48x32xf8E4M3FN>, tensor<4x48x32xf8E4M3FN>, tensor<4x32x48xf8E4M3FN>, tensor<4x48x1xf32>, tensor<4x48x1xf32>, tensor<4x32x2xf32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @quant_grouped_scales(%r: tensor<?x64xf32>, %w: tensor<4x16x32xi8>, %o: tensor<5xi32>, %s: tensor<4x16x4xf16>) {
  // expected-error @+1 {{expects the last dimension of the scales of the expert weights (4) to equal K / group size (2).}}
  %0 = moe.grouped_matmul %r, %w, %o scales %s {quant = #moe.quant<q4, group_size = 32>} : (tensor<?x64xf32>, tensor<4x16x32xi8>, tensor<5xi32>, tensor<4x16x4xf16>) -> tensor<?x16xf32>
  return
}

// -----

func.func @quant_block_w2(%x: tensor<?x32xf32>, %g: tensor<4x32xbf16>, %w1: tensor<4x64x32xi8>, %w3: tensor<4x64x32xi8>, %w2: tensor<4x32x64xi8>, %s1: tensor<4x64x1xf16>, %s2: tensor<4x32x1xf16>) {
  // expected-error @+1 {{expects the last dimension of the scales of w2 (1) to equal K / group size (2).}}
  %0 = moe.sparse_block %x, %g, %w1, %w3, %w2 scales %s1, %s1, %s2 {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>} : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x64x32xi8>, tensor<4x64x32xi8>, tensor<4x32x64xi8>, tensor<4x64x1xf16>, tensor<4x64x1xf16>, tensor<4x32x1xf16>) -> tensor<?x32xf32>
  return
}

// -----

func.func @quant_swiglu_float_data(%x: tensor<?x32xf32>, %p: tensor<?xi32>, %o: tensor<5xi32>, %w1: tensor<4x64x32xbf16>, %s1: tensor<4x64x1xf16>) {
  // expected-error @+1 {{expects w1 to hold 'i8' data for q8, but its element type is 'bf16'.}}
  %0 = moe.grouped_swiglu %x, %p, %o, %w1, %w1 scales %s1, %s1 {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>} : (tensor<?x32xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x64x32xbf16>, tensor<4x64x32xbf16>, tensor<4x64x1xf16>, tensor<4x64x1xf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @quant_combine_no_scales(%h: tensor<?x64xf32>, %w2: tensor<4x32x64xi8>, %o: tensor<5xi32>, %p: tensor<?xi32>, %rw: tensor<?x2xf32>) {
  // expected-error @+1 {{expects scales for w2, because the op has a quant attribute.}}
  %0 = moe.grouped_matmul_combine %h, %w2, %o, %p, %rw {quant = #moe.quant<q8, group_size = 32>} : (tensor<?x64xf32>, tensor<4x32x64xi8>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @rope_at_rows(%x: tensor<3x4x16xf32>, %p: tensor<2xi32>) {
  // expected-error @+1 {{expects the number of positions (2) to equal the number of input rows (3).}}
  %0 = moe.rope_at %x, %p {theta = 1.0e+04 : f64} : (tensor<3x4x16xf32>, tensor<2xi32>) -> tensor<3x4x16xf32>
  return
}

// -----

func.func @rope_at_odd(%x: tensor<?x4x15xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects an even head dimension, but it is 15.}}
  %0 = moe.rope_at %x, %p {theta = 1.0e+04 : f64} : (tensor<?x4x15xf32>, tensor<?xi32>) -> tensor<?x4x15xf32>
  return
}

// -----

func.func @rope_at_positions_rank(%x: tensor<?x4x16xf32>, %p: tensor<?x1xi32>) {
  // expected-error @+1 {{expects the positions to have rank 1, but it has rank 2.}}
  %0 = moe.rope_at %x, %p {theta = 1.0e+04 : f64} : (tensor<?x4x16xf32>, tensor<?x1xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @kv_write_pool_rank(%k: tensor<?x2x16xf32>, %pool: tensor<?x2x16xf32>, %t: tensor<?x4xi32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the pool to have rank 4, but it has rank 3.}}
  %0 = moe.paged_kv_write %k, %pool, %t, %p : (tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x2x16xf32>
  return
}

// -----

func.func @kv_write_dynamic_block(%k: tensor<?x2x16xf32>, %pool: tensor<?x?x2x16xf32>, %t: tensor<?x4xi32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the block size to be static, because it is a model dimension.}}
  %0 = moe.paged_kv_write %k, %pool, %t, %p : (tensor<?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x?x2x16xf32>
  return
}

// -----

func.func @kv_write_heads(%k: tensor<?x4x16xf32>, %pool: tensor<?x16x2x16xf32>, %t: tensor<?x4xi32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the update's number of heads (4) to equal the pool's (2).}}
  %0 = moe.paged_kv_write %k, %pool, %t, %p : (tensor<?x4x16xf32>, tensor<?x16x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x16x2x16xf32>
  return
}

// -----

func.func @kv_write_tables(%k: tensor<5x2x16xf32>, %pool: tensor<?x16x2x16xf32>, %t: tensor<4x4xi32>, %p: tensor<5xi32>) {
  // expected-error @+1 {{expects the number of block tables (4) to equal the number of update rows (5).}}
  %0 = moe.paged_kv_write %k, %pool, %t, %p : (tensor<5x2x16xf32>, tensor<?x16x2x16xf32>, tensor<4x4xi32>, tensor<5xi32>) -> tensor<?x16x2x16xf32>
  return
}

// -----

func.func @kv_write_result(%k: tensor<?x2x16xf32>, %pool: tensor<?x16x2x16xf32>, %t: tensor<?x4xi32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the result to have the pool's type.}}
  %0 = moe.paged_kv_write %k, %pool, %t, %p : (tensor<?x2x16xf32>, tensor<?x16x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<8x16x2x16xf32>
  return
}

// -----

func.func @kv_write_type(%k: tensor<?x2x16xbf16>, %pool: tensor<?x16x2x16xf32>, %t: tensor<?x4xi32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the update to have the element type of the pool ('f32'), but it has 'bf16'.}}
  %0 = moe.paged_kv_write %k, %pool, %t, %p : (tensor<?x2x16xbf16>, tensor<?x16x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x16x2x16xf32>
  return
}

// -----

func.func @paged_att_pools(%q: tensor<?x4x16xf32>, %k: tensor<?x16x2x16xf32>, %v: tensor<?x8x2x16xf32>, %t: tensor<?x4xi32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the key and value pools to have the same type.}}
  %0 = moe.paged_attention %q, %k, %v, %t, %p {scale = 0.25 : f64} : (tensor<?x4x16xf32>, tensor<?x16x2x16xf32>, tensor<?x8x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @paged_att_gqa(%q: tensor<?x4x16xf32>, %k: tensor<?x16x3x16xf32>, %v: tensor<?x16x3x16xf32>, %t: tensor<?x4xi32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the number of query heads (4) to be a multiple of the number of key/value heads (3).}}
  %0 = moe.paged_attention %q, %k, %v, %t, %p {scale = 0.25 : f64} : (tensor<?x4x16xf32>, tensor<?x16x3x16xf32>, tensor<?x16x3x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @paged_att_hd(%q: tensor<?x4x16xf32>, %k: tensor<?x16x2x8xf32>, %v: tensor<?x16x2x8xf32>, %t: tensor<?x4xi32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the key pool's head dimension (8) to equal the query's head dimension (16).}}
  %0 = moe.paged_attention %q, %k, %v, %t, %p {scale = 0.25 : f64} : (tensor<?x4x16xf32>, tensor<?x16x2x8xf32>, tensor<?x16x2x8xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @paged_att_positions(%q: tensor<3x4x16xf32>, %k: tensor<?x16x2x16xf32>, %v: tensor<?x16x2x16xf32>, %t: tensor<3x4xi32>, %p: tensor<2xi32>) {
  // expected-error @+1 {{expects the number of positions (2) to equal the number of query rows (3).}}
  %0 = moe.paged_attention %q, %k, %v, %t, %p {scale = 0.25 : f64} : (tensor<3x4x16xf32>, tensor<?x16x2x16xf32>, tensor<?x16x2x16xf32>, tensor<3x4xi32>, tensor<2xi32>) -> tensor<3x4x16xf32>
  return
}

// -----

func.func @paged_att_scale(%q: tensor<?x4x16xf32>, %k: tensor<?x16x2x16xf32>, %v: tensor<?x16x2x16xf32>, %t: tensor<?x4xi32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects a positive scale.}}
  %0 = moe.paged_attention %q, %k, %v, %t, %p {scale = 0.0 : f64} : (tensor<?x4x16xf32>, tensor<?x16x2x16xf32>, tensor<?x16x2x16xf32>, tensor<?x4xi32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @paged_att_tables_rank(%q: tensor<?x4x16xf32>, %k: tensor<?x16x2x16xf32>, %v: tensor<?x16x2x16xf32>, %t: tensor<?xi32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{expects the block tables to have rank 2, but it has rank 1.}}
  %0 = moe.paged_attention %q, %k, %v, %t, %p {scale = 0.25 : f64} : (tensor<?x4x16xf32>, tensor<?x16x2x16xf32>, tensor<?x16x2x16xf32>, tensor<?xi32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @panels_cols(%arena: memref<4096xi8>) {
  %c0 = arith.constant 0 : index
  // expected-error @+1 {{expects positive cols and lanes, but they are 0 and 8.}}
  %v = memref.view %arena[%c0][] {moe.panels = #moe.panels<cols = 0, lanes = 8>} : memref<4096xi8> to memref<32x64xbf16>
  return
}

// -----

func.func @kernel_call_no_name(%x: memref<4xf32>) {
  // expected-error @+1 {{expects a kernel name, but it is empty.}}
  moe.kernel_call "" outs(%x : memref<4xf32>)
  return
}

// -----

func.func @kernel_call_no_outputs(%x: memref<4xf32>) {
  // expected-error @+1 {{expects at least one output, because a kernel call without outputs computes nothing.}}
  "moe.kernel_call"(%x) <{kernel = "copy", operandSegmentSizes = array<i32: 1, 0>}> : (memref<4xf32>) -> ()
  return
}

// -----

func.func @kernel_call_mixed_outputs(%x: tensor<4xf32>, %y: memref<4xf32>) {
  // expected-error @+1 {{expects its outputs to be all tensors or all buffers, but output #1 is a buffer and output #0 is not.}}
  %0 = moe.kernel_call "split" outs(%x, %y : tensor<4xf32>, memref<4xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @kernel_call_tensor_input(%x: tensor<4xf32>, %y: memref<4xf32>) {
  // expected-error @+1 {{expects buffer inputs because its outputs are buffers, but input #0 is a tensor.}}
  moe.kernel_call "copy" ins(%x : tensor<4xf32>) outs(%y : memref<4xf32>)
  return
}

// -----

func.func @kernel_call_buffer_input(%x: memref<4xf32>, %y: tensor<4xf32>) {
  // expected-error @+1 {{expects tensor inputs because its outputs are tensors, but input #0 is a buffer.}}
  %0 = moe.kernel_call "copy" ins(%x : memref<4xf32>) outs(%y : tensor<4xf32>) -> tensor<4xf32>
  return
}
