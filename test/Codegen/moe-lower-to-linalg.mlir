// RUN: moe-opt %s -split-input-file -moe-lower-to-linalg | FileCheck %s

// y = x Wᵀ: a matmul whose weight map is transposed; the bf16 weight is read as it is.
// CHECK-DAG:   #[[LHS:.*]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG:   #[[RHS:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-DAG:   #[[OUT:.*]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @linear
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[W:.*]]: tensor<32x64xbf16>)
// CHECK:         %[[ZERO:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<?x32xf32>)
// CHECK:         %[[Y:.*]] = linalg.matmul indexing_maps = [#[[LHS]], #[[RHS]], #[[OUT]]] ins(%[[X]], %[[W]] : tensor<?x64xf32>, tensor<32x64xbf16>) outs(%[[ZERO]] : tensor<?x32xf32>)
// CHECK:         return %[[Y]]
// CHECK-NOT:     moe.
func.func @linear(%x: tensor<?x64xf32>, %w: tensor<32x64xbf16>) -> tensor<?x32xf32> {
  %y = moe.linear %x, %w : (tensor<?x64xf32>, tensor<32x64xbf16>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// Grouped GEMM: a loop over experts; expert e's rows [off[e], off[e+1]) times its weight slice.
// CHECK-LABEL: func.func @grouped
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[W:.*]]: tensor<4x32x64xbf16>, %[[OFF:.*]]: tensor<5xi32>)
// CHECK:         %[[C4:.*]] = arith.constant 4 : index
// CHECK:         scf.for %[[E:.*]] = %{{.*}} to %[[C4]] step %{{.*}} iter_args(%[[ACC:.*]] = %{{.*}}) -> (tensor<?x32xf32>)
// CHECK:           %[[LO32:.*]] = tensor.extract %[[OFF]][%[[E]]]
// CHECK:           %[[LO:.*]] = arith.index_cast %[[LO32]]
// CHECK:           %[[LEN:.*]] = arith.subi %{{.*}}, %[[LO]]
// CHECK:           %[[DST:.*]] = tensor.extract_slice %[[ACC]][%[[LO]], 0] [%[[LEN]], 32] [1, 1]
// CHECK:           %[[ROWS:.*]] = tensor.extract_slice %[[X]][%[[LO]], 0] [%[[LEN]], 64] [1, 1]
// CHECK:           %[[WE:.*]] = tensor.extract_slice %[[W]][%[[E]], 0, 0] [1, 32, 64] [1, 1, 1] : tensor<4x32x64xbf16> to tensor<32x64xbf16>
// CHECK:           %[[Z:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[DST]] : tensor<?x32xf32>)
// CHECK:           %[[MM:.*]] = linalg.matmul {{.*}} ins(%[[ROWS]], %[[WE]] : tensor<?x64xf32>, tensor<32x64xbf16>) outs(%[[Z]] : tensor<?x32xf32>)
// CHECK:           %[[INS:.*]] = tensor.insert_slice %[[MM]] into %[[ACC]][%[[LO]], 0] [%[[LEN]], 32] [1, 1]
// CHECK:           scf.yield %[[INS]]
func.func @grouped(%x: tensor<?x64xf32>, %w: tensor<4x32x64xbf16>, %o: tensor<5xi32>) -> tensor<?x32xf32> {
  %y = moe.grouped_matmul %x, %w, %o : (tensor<?x64xf32>, tensor<4x32x64xbf16>, tensor<5xi32>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// Attention reads only cache positions [0, start + T), masks causally and by the window.
// CHECK-LABEL: func.func @attention
// CHECK-SAME:    (%[[Q:.*]]: tensor<?x4x8xf32>, %[[K:.*]]: tensor<64x2x8xf32>, %[[V:.*]]: tensor<64x2x8xf32>, %[[START:.*]]: index)
// CHECK:         %[[Q4:.*]] = tensor.expand_shape %[[Q]] {{\[}}[0], [1, 2], [3]] output_shape [%{{.*}}, 2, 2, 8]
// CHECK:         %[[L:.*]] = arith.addi %[[START]], %{{.*}} : index
// CHECK:         %[[KS:.*]] = tensor.extract_slice %[[K]][0, 0, 0] [%[[L]], 2, 8] [1, 1, 1] : tensor<64x2x8xf32> to tensor<?x2x8xf32>
// CHECK:         %[[VS:.*]] = tensor.extract_slice %[[V]][0, 0, 0] [%[[L]], 2, 8] [1, 1, 1] : tensor<64x2x8xf32> to tensor<?x2x8xf32>
// CHECK:         linalg.generic {{.*}} ins(%[[Q4]], %[[KS]] : tensor<?x2x2x8xf32>, tensor<?x2x8xf32>)
// CHECK:           arith.cmpi sle
// CHECK:           arith.cmpi sgt
// CHECK:         arith.maximumf
// CHECK:         math.exp
// CHECK:         arith.divf
// The values are transposed to [KVH, HD, L] once, so that the weighted sum over positions
// reads them contiguously.
// CHECK:         %[[VT:.*]] = linalg.generic {indexing_maps = [#{{.*}}, #{{.*}}], iterator_types = ["parallel", "parallel", "parallel"]} ins(%[[VS]] : tensor<?x2x8xf32>) outs(%{{.*}} : tensor<2x8x?xf32>)
// CHECK:         linalg.generic {{.*}} ins(%{{.*}}, %[[VT]] : tensor<?x2x2x?xf32>, tensor<2x8x?xf32>)
// CHECK:         tensor.collapse_shape %{{.*}} {{\[}}[0], [1, 2], [3]] : tensor<?x2x2x8xf32> into tensor<?x4x8xf32>
func.func @attention(%q: tensor<?x4x8xf32>, %k: tensor<64x2x8xf32>, %v: tensor<64x2x8xf32>, %start: index) -> tensor<?x4x8xf32> {
  %y = moe.attention %q, %k, %v, %start {scale = 0.35 : f64, sliding_window = 6 : i64}
      : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, index) -> tensor<?x4x8xf32>
  return %y : tensor<?x4x8xf32>
}

// -----

// Routing: sequential loops over tokens, slots and experts; dispatch is a counting sort.
// CHECK-LABEL: func.func @routing
// CHECK:         linalg.matmul
// CHECK:         scf.for
// CHECK:           scf.for
// CHECK:             scf.for
// CHECK:               arith.cmpf ugt
// CHECK:           math.exp
// CHECK:           arith.divf
// CHECK:         scf.for
// CHECK:           arith.minui
// CHECK:         scf.for
// CHECK:         scf.for
// CHECK:           arith.minui
// CHECK-NOT:     moe.
func.func @routing(%x: tensor<?x16xf32>, %g: tensor<4x16xf32>) -> (tensor<?xi32>, tensor<5xi32>, tensor<?x2xf32>) {
  %l = moe.router %x, %g : (tensor<?x16xf32>, tensor<4x16xf32>) -> tensor<?x4xf32>
  %w, %ids = moe.top_k_gating %l {k = 2 : i64} : (tensor<?x4xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %p, %o = moe.dispatch %ids {num_experts = 4 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<5xi32>)
  return %p, %o, %w : tensor<?xi32>, tensor<5xi32>, tensor<?x2xf32>
}

// -----

// Top-k's total order: NaN ranks below -inf, ties go to the lower id. The expert loop takes
// logit v (id e) when it comes after the previous pick (prev, pe) -- prev is a number above v
// (ord, ugt: v may be NaN), or both rank equal (oeq, or both NaN) and e > pe -- and, unless
// nothing is taken yet, v is a number above the best so far (ord, ugt: best may be NaN).
// CHECK-LABEL: func.func @top_k_order
// CHECK:         %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK:         %[[POSINF:.*]] = arith.constant 0x7F800000 : f32
// CHECK:         %[[NONE:.*]] = arith.constant -1 : index
// CHECK:         scf.for {{.*}} iter_args({{.*}}, %{{.*}} = %[[POSINF]], %{{.*}} = %[[NONE]])
// CHECK-NEXT:      scf.for %[[E:.*]] = {{.*}} iter_args(%[[BEST:.*]] = %[[NEGINF]], %[[BESTE:.*]] = %[[NONE]])
// CHECK-NEXT:        %[[V:.*]] = tensor.extract
// CHECK-NEXT:        %[[LATER:.*]] = arith.cmpi sgt, %[[E]], %[[PE:.*]] : index
// CHECK-NEXT:        %[[PNUM:.*]] = arith.cmpf ord, %[[P:.*]], %[[P]] : f32
// CHECK-NEXT:        %[[PGT:.*]] = arith.cmpf ugt, %[[P]], %[[V]] : f32
// CHECK-NEXT:        %[[PABOVE:.*]] = arith.andi %[[PNUM]], %[[PGT]] : i1
// CHECK-NEXT:        %[[EQ:.*]] = arith.cmpf oeq, %[[V]], %[[P]] : f32
// CHECK-NEXT:        %[[VNAN:.*]] = arith.cmpf uno, %[[V]], %[[V]] : f32
// CHECK-NEXT:        %[[PNAN:.*]] = arith.cmpf uno, %[[P]], %[[P]] : f32
// CHECK-NEXT:        %[[BOTHNAN:.*]] = arith.andi %[[VNAN]], %[[PNAN]] : i1
// CHECK-NEXT:        %[[SAME:.*]] = arith.ori %[[EQ]], %[[BOTHNAN]] : i1
// CHECK-NEXT:        %[[TIE:.*]] = arith.andi %[[SAME]], %[[LATER]] : i1
// CHECK-NEXT:        %[[AFTER:.*]] = arith.ori %[[PABOVE]], %[[TIE]] : i1
// CHECK-NEXT:        %[[NOBEST:.*]] = arith.cmpi slt, %[[BESTE]], %{{.*}} : index
// CHECK-NEXT:        %[[VNUM:.*]] = arith.cmpf ord, %[[V]], %[[V]] : f32
// CHECK-NEXT:        %[[VGT:.*]] = arith.cmpf ugt, %[[V]], %[[BEST]] : f32
// CHECK-NEXT:        %[[VABOVE:.*]] = arith.andi %[[VNUM]], %[[VGT]] : i1
// CHECK-NEXT:        %[[BETTER:.*]] = arith.ori %[[NOBEST]], %[[VABOVE]] : i1
// CHECK-NEXT:        %[[TAKE:.*]] = arith.andi %[[AFTER]], %[[BETTER]] : i1
// CHECK-NEXT:        arith.select %[[TAKE]], %[[V]], %[[BEST]] : f32
// CHECK-NEXT:        arith.select %[[TAKE]], %[[E]], %[[BESTE]] : index
func.func @top_k_order(%l: tensor<?x4xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %ids = moe.top_k_gating %l {k = 2 : i64} : (tensor<?x4xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  return %w, %ids : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// Dispatch clamps ids to [0, E) with one unsigned min (a negative id is huge as unsigned)
// before they index the counts and cursors.
// CHECK-LABEL: func.func @dispatch_clamps_ids
// CHECK:         %[[LAST:.*]] = arith.constant 3 : i32
// CHECK:         scf.for
// CHECK:           %[[ID:.*]] = tensor.extract %{{.*}} : tensor<?x2xi32>
// CHECK-NEXT:      %[[C:.*]] = arith.minui %[[ID]], %[[LAST]] : i32
// CHECK-NEXT:      arith.index_cast %[[C]] : i32 to index
// CHECK:         scf.for
// CHECK:         scf.for
// CHECK:           %[[ID2:.*]] = tensor.extract %{{.*}} : tensor<?x2xi32>
// CHECK-NEXT:      %[[C2:.*]] = arith.minui %[[ID2]], %[[LAST]] : i32
// CHECK-NEXT:      arith.index_cast %[[C2]] : i32 to index
func.func @dispatch_clamps_ids(%ids: tensor<?x2xi32>) -> (tensor<?xi32>, tensor<5xi32>) {
  %p, %o = moe.dispatch %ids {num_experts = 4 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<5xi32>)
  return %p, %o : tensor<?xi32>, tensor<5xi32>
}

// -----

// Decode shapes stay static; RMSNorm and RoPE become generics, the fused expert kernels
// loops over experts.
// CHECK-LABEL: func.func @decode
// CHECK:         linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]
// CHECK:           math.sqrt
// CHECK:         math.powf
// CHECK:         math.cos
// CHECK:         math.sin
// CHECK:         scf.for
// CHECK:           linalg.matmul
// CHECK:           linalg.matmul
// CHECK:           math.exp
// CHECK:         scf.for
// CHECK:           linalg.matmul
// CHECK-NOT:     moe.
func.func @decode(%x: tensor<1x16xf32>, %nw: tensor<16xbf16>, %q: tensor<1x2x8xf32>, %start: index,
                  %perm: tensor<2xi32>, %off: tensor<5xi32>, %w1: tensor<4x8x16xbf16>,
                  %w3: tensor<4x8x16xbf16>, %w2: tensor<4x16x8xbf16>, %rw: tensor<1x2xf32>)
    -> (tensor<1x16xf32>, tensor<1x2x8xf32>, tensor<1x16xf32>) {
  %n = moe.rms_norm %x, %nw {epsilon = 1.0e-05 : f64} : (tensor<1x16xf32>, tensor<16xbf16>) -> tensor<1x16xf32>
  %r = moe.rope %q, %start {theta = 1.0e+06 : f64} : (tensor<1x2x8xf32>, index) -> tensor<1x2x8xf32>
  %h = moe.grouped_swiglu %n, %perm, %off, %w1, %w3 {k = 2 : i64}
      : (tensor<1x16xf32>, tensor<2xi32>, tensor<5xi32>, tensor<4x8x16xbf16>, tensor<4x8x16xbf16>) -> tensor<2x8xf32>
  %y = moe.grouped_matmul_combine %h, %w2, %off, %perm, %rw
      : (tensor<2x8xf32>, tensor<4x16x8xbf16>, tensor<5xi32>, tensor<2xi32>, tensor<1x2xf32>) -> tensor<1x16xf32>
  return %n, %r, %y : tensor<1x16xf32>, tensor<1x2x8xf32>, tensor<1x16xf32>
}

// -----

// The batched step: RoPE reads each row's position; the KV write is a loop of row copies into
// (table[t, p / 16], p % 16) of the pool; the paged attention reads keys and values through a
// [T, Lmax] table of pool rows (block * 16 + slot) with Lmax the longest span of the step, and
// masks the columns past a row's own position to -inf (here a window of 8: lo = max(0, p - 7)).
// CHECK-LABEL: func.func @step
// CHECK-SAME:    (%[[Q:.*]]: tensor<?x4x16xf32>, %[[K:.*]]: tensor<?x2x16xf32>, %[[KP:.*]]: tensor<?x16x2x16xf32>, %[[VP:.*]]: tensor<?x16x2x16xf32>, %[[T:.*]]: tensor<?x4xi32>, %[[P:.*]]: tensor<?xi32>)
// CHECK:         linalg.generic
// CHECK:           tensor.extract %[[P]][%{{.*}}] : tensor<?xi32>
// CHECK:           math.cos
// CHECK:         %[[C16:.*]] = arith.constant 16 : index
// CHECK:         %[[K2:.*]] = scf.for %[[R:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[POOL:.*]] = %[[KP]])
// CHECK:           %[[POS:.*]] = arith.index_cast %{{.*}} : i32 to index
// CHECK:           %[[BI:.*]] = arith.divui %[[POS]], %[[C16]]
// CHECK:           tensor.extract %[[T]][%[[R]], %[[BI]]]
// CHECK:           %[[SLOT:.*]] = arith.remui %[[POS]], %[[C16]]
// CHECK:           %[[ROW:.*]] = tensor.extract_slice %[[K]][%[[R]], 0, 0] [1, 2, 16] [1, 1, 1] : tensor<?x2x16xf32> to tensor<2x16xf32>
// CHECK:           tensor.insert_slice %[[ROW]] into %[[POOL]][%{{.*}}, %[[SLOT]], 0, 0] [1, 1, 2, 16] [1, 1, 1, 1]
// CHECK:         %[[KF:.*]] = tensor.collapse_shape %[[K2]] {{\[\[}}0, 1], [2], [3]] : tensor<?x16x2x16xf32> into tensor<?x2x16xf32>
// CHECK:         %[[SPAN:.*]] = scf.for
// CHECK:           %[[C7:.*]] = arith.constant 7 : index
// CHECK:           arith.subi %{{.*}}, %[[C7]]
// CHECK:           arith.maxsi
// CHECK:           arith.maxui
// CHECK:         %[[SLOTS:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x?xi32>)
// CHECK:         %[[S:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%{{.*}}, %[[SLOTS]] : tensor<?x2x2x16xf32>, tensor<?x?xi32>)
// CHECK:           tensor.extract %[[KF]]
// CHECK:         linalg.generic
// CHECK:           arith.cmpi ule
// CHECK:           arith.select
// CHECK:         math.exp
// CHECK:         linalg.generic {{.*}} ins(%{{.*}}, %[[SLOTS]] : tensor<?x2x2x?xf32>, tensor<?x?xi32>)
// CHECK-NOT:     moe.
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
