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

// Attention is the tiled online-softmax kernel: an scf.forall over (KV head, query row t at
// p = start + t) with lo = p + 1 - min(p + 1, W); the row walks its key tiles of 8 positions
// [lo / 8, p / 8] in ascending order, keeping both query heads' running max, sum and HD-wide
// accumulator as iter_args. Each key row (clamped into [lo, p], masked outside it) is read
// once for the two query heads of its KV head; acc / l goes into the row's [G, HD] slice.
// Only cache positions [0, start + T) are read, and no [T, H, L] scores tensor exists.
// CHECK-LABEL: func.func @attention
// CHECK-SAME:    (%[[Q:.*]]: tensor<?x4x8xf32>, %[[K:.*]]: tensor<64x2x8xf32>, %[[V:.*]]: tensor<64x2x8xf32>, %[[START:.*]]: index)
// CHECK-NOT:     linalg.generic
// CHECK:         %[[L:.*]] = arith.addi %[[START]], %{{.*}} : index
// CHECK:         %[[Q4:.*]] = tensor.expand_shape %[[Q]] {{\[}}[0], [1, 2], [3]] output_shape [%{{.*}}, 2, 2, 8]
// CHECK:         %[[KS:.*]] = tensor.extract_slice %[[K]][0, 0, 0] [%[[L]], 2, 8] [1, 1, 1] : tensor<64x2x8xf32> to tensor<?x2x8xf32>
// CHECK:         %[[VS:.*]] = tensor.extract_slice %[[V]][0, 0, 0] [%[[L]], 2, 8] [1, 1, 1] : tensor<64x2x8xf32> to tensor<?x2x8xf32>
// CHECK:         %[[OUT:.*]] = scf.forall (%[[KH:.*]], %[[T:.*]]) in (2, %{{.*}}) shared_outs(%[[SH:.*]] = %{{.*}}) -> (tensor<?x2x2x8xf32>)
// CHECK:           %[[P:.*]] = arith.addi %[[START]], %[[T]] : index
// CHECK:           %[[P1:.*]] = arith.addi %[[P]], %{{.*}} : index
// CHECK:           %[[CUT:.*]] = arith.minui %[[P1]], %[[C6:.*]] : index
// CHECK:           %[[LO:.*]] = arith.subi %[[P1]], %[[CUT]] : index
// CHECK:           %[[ROW:.*]] = tensor.extract_slice %[[SH]][%[[T]], %[[KH]], 0, 0] [1, 1, 2, 8] [1, 1, 1, 1] : tensor<?x2x2x8xf32> to tensor<2x8xf32>
// CHECK:           %[[Q0:.*]] = vector.transfer_read %[[Q4]][%[[T]], %[[KH]], %{{.*}}, %{{.*}}]{{.*}} : tensor<?x2x2x8xf32>, vector<8xf32>
// CHECK:           %[[Q1:.*]] = vector.transfer_read %[[Q4]][%[[T]], %[[KH]], %{{.*}}, %{{.*}}]{{.*}} : tensor<?x2x2x8xf32>, vector<8xf32>
// CHECK:           %[[FIRST:.*]] = arith.divui %[[LO]], %[[C8:.*]] : index
// CHECK:           %[[LAST:.*]] = arith.divui %[[P]], %[[C8]] : index
// CHECK:           %[[END:.*]] = arith.addi %[[LAST]], %{{.*}} : index
// CHECK:           %[[R:.*]]:6 = scf.for %[[I:.*]] = %[[FIRST]] to %[[END]] step %{{.*}} iter_args(%[[M0:.*]] = %{{.*}}, %[[S0:.*]] = %{{.*}}, %[[A0:.*]] = %{{.*}}, %{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (f32, f32, vector<8xf32>, f32, f32, vector<8xf32>)
// CHECK:             %[[BASE:.*]] = arith.muli %[[I]], %[[C8]] : index
// CHECK:             %[[J0:.*]] = arith.addi %[[BASE]], %{{.*}} : index
// CHECK:             %[[GE:.*]] = arith.cmpi uge, %[[J0]], %[[LO]] : index
// CHECK:             %[[LE:.*]] = arith.cmpi ule, %[[J0]], %[[P]] : index
// CHECK:             %[[VIS:.*]] = arith.andi %[[GE]], %[[LE]] : i1
// CHECK:             %[[UP:.*]] = arith.maxui %[[J0]], %[[LO]] : index
// CHECK:             %[[AT:.*]] = arith.minui %[[UP]], %[[P]] : index
// CHECK:             %[[K0:.*]] = vector.transfer_read %[[KS]][%[[AT]], %[[KH]], %{{.*}}]{{.*}} : tensor<?x2x8xf32>, vector<8xf32>
// CHECK:             %[[D0:.*]] = arith.mulf %[[Q0]], %[[K0]] : vector<8xf32>
// CHECK:             %[[SUM0:.*]] = vector.reduction <add>, %[[D0]] : vector<8xf32> into f32
// CHECK:             %[[SC0:.*]] = arith.mulf %[[SUM0]], %{{.*}} : f32
// CHECK:             %[[S00:.*]] = arith.select %[[VIS]], %[[SC0]], %{{.*}} : f32
// CHECK-NOT:         vector.transfer_read
// CHECK:             arith.mulf %[[Q1]], %[[K0]] : vector<8xf32>
// CHECK:             vector.transfer_read %[[KS]]
// CHECK:             %[[TMAX:.*]] = arith.maximumf %[[S00]], %{{.*}} : f32
// CHECK:             %[[MNEW:.*]] = arith.maximumf %[[M0]], %{{.*}} : f32
// CHECK:             %[[DM:.*]] = arith.subf %[[M0]], %[[MNEW]] : f32
// CHECK:             %[[ALPHA:.*]] = math.exp %[[DM]] : f32
// CHECK:             %[[LS:.*]] = arith.mulf %[[S0]], %[[ALPHA]] : f32
// CHECK:             %[[E0:.*]] = arith.subf %[[S00]], %[[MNEW]] : f32
// CHECK:             %[[P00:.*]] = math.exp %[[E0]] : f32
// CHECK:             arith.addf %[[LS]], %[[P00]] : f32
// CHECK:             %[[AV:.*]] = vector.broadcast %[[ALPHA]] : f32 to vector<8xf32>
// CHECK:             %[[PV:.*]] = vector.broadcast %[[P00]] : f32 to vector<8xf32>
// CHECK:             %[[AS:.*]] = arith.mulf %[[A0]], %[[AV]] : vector<8xf32>
// CHECK:             %[[V0:.*]] = vector.transfer_read %[[VS]][%[[AT]], %[[KH]], %{{.*}}]{{.*}} : tensor<?x2x8xf32>, vector<8xf32>
// CHECK:             vector.fma %[[PV]], %[[V0]], %[[AS]] : vector<8xf32>
// CHECK:             scf.yield
// CHECK-NOT:       linalg.generic
// CHECK:           %[[LV:.*]] = vector.broadcast %[[R]]#1 : f32 to vector<8xf32>
// CHECK:           %[[O0:.*]] = arith.divf %[[R]]#2, %[[LV]] : vector<8xf32>
// CHECK:           vector.transfer_write %[[O0]], %[[ROW]][%{{.*}}, %{{.*}}] {in_bounds = [true]} : vector<8xf32>, tensor<2x8xf32>
// CHECK:           scf.forall.in_parallel
// CHECK:             tensor.parallel_insert_slice %{{.*}} into %[[SH]][%[[T]], %[[KH]], 0, 0] [1, 1, 2, 8] [1, 1, 1, 1] : tensor<2x8xf32> into tensor<?x2x2x8xf32>
// CHECK:         tensor.collapse_shape %[[OUT]] {{\[}}[0], [1, 2], [3]] : tensor<?x2x2x8xf32> into tensor<?x4x8xf32>
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
// (table[t, p / 16], p % 16) of the pool; the paged attention is the kernel of @attention at
// each row's own position p (here a window of 8: lo = p + 1 - min(p + 1, 8)), reading
// position `at` at pool row table[t, at / 16] * 16 + at % 16.
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
// CHECK:         %[[VF:.*]] = tensor.collapse_shape %[[VP]] {{\[\[}}0, 1], [2], [3]] : tensor<?x16x2x16xf32> into tensor<?x2x16xf32>
// CHECK:         scf.forall (%[[KH:.*]], %[[ROWI:.*]]) in (2, %{{.*}})
// CHECK:           %[[PI:.*]] = tensor.extract %[[P]][%[[ROWI]]] : tensor<?xi32>
// CHECK:           %[[PP:.*]] = arith.index_cast %[[PI]] : i32 to index
// CHECK:           %[[P1:.*]] = arith.addi %[[PP]], %{{.*}} : index
// CHECK:           %[[C8:.*]] = arith.constant 8 : index
// CHECK:           arith.minui %[[P1]], %[[C8]] : index
// CHECK:           scf.for
// CHECK:             %[[AT:.*]] = arith.minui %{{.*}}, %[[PP]] : index
// CHECK:             %[[BLK:.*]] = arith.divui %[[AT]], %[[B16:.*]] : index
// CHECK:             %[[TB:.*]] = tensor.extract %[[T]][%[[ROWI]], %[[BLK]]] : tensor<?x4xi32>
// CHECK:             %[[TBI:.*]] = arith.index_cast %[[TB]] : i32 to index
// CHECK:             %[[BASE:.*]] = arith.muli %[[TBI]], %[[B16]] : index
// CHECK:             %[[OFF:.*]] = arith.remui %[[AT]], %[[B16]] : index
// CHECK:             %[[PROW:.*]] = arith.addi %[[BASE]], %[[OFF]] : index
// CHECK:             vector.transfer_read %[[KF]][%[[PROW]], %[[KH]], %{{.*}}]
// CHECK:             vector.transfer_read %[[VF]][%[[PROW]], %[[KH]], %{{.*}}]
// CHECK:             scf.yield
// CHECK:           scf.forall.in_parallel
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

// -----

// Expert weights whose arena view is marked #moe.panels (mixtral-compile --pack on a CPU): the
// same bytes seen as [E, N / cols, K, cols], expert e's slice read by a linalg.generic whose
// weight map is the panel order, marked for moe-cpu-vectorize-matmul.
// CHECK-DAG:   #[[PW:.*]] = affine_map<(d0, d1, d2) -> (d1 floordiv 16, (d2 mod 8) * 8 + d2 floordiv 8, d1 mod 16)>
// CHECK-LABEL: func.func @grouped_panels
// CHECK-SAME:    (%[[X:.*]]: tensor<?x64xf32>, %[[A:.*]]: memref<16384xi8>, %[[OFF:.*]]: tensor<5xi32>)
// CHECK:         scf.for %[[E:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(
// CHECK:           %[[V:.*]] = memref.view %[[A]][%{{.*}}][] : memref<16384xi8> to memref<4x2x64x16xbf16>
// CHECK:           %[[T:.*]] = bufferization.to_tensor %[[V]] restrict : memref<4x2x64x16xbf16>
// CHECK:           %[[WE:.*]] = tensor.extract_slice %[[T]][%[[E]], 0, 0, 0] [1, 2, 64, 16] [1, 1, 1, 1] : tensor<4x2x64x16xbf16> to tensor<2x64x16xbf16>
// CHECK:           linalg.generic {indexing_maps = [#{{.*}}, #[[PW]], #{{.*}}], iterator_types = ["parallel", "parallel", "reduction"]}
// CHECK-SAME:        ins(%{{.*}}, %[[WE]] : tensor<?x64xf32>, tensor<2x64x16xbf16>)
// CHECK-SAME:        attrs =  {moe.panels = #moe.panels<cols = 16, lanes = 8>}
// CHECK:             arith.extf
// CHECK:             arith.mulf
// CHECK:             arith.addf
// CHECK-NOT:     linalg.matmul
func.func @grouped_panels(%x: tensor<?x64xf32>, %arena: memref<16384xi8>, %o: tensor<5xi32>) -> tensor<?x32xf32> {
  %c0 = arith.constant 0 : index
  %v = memref.view %arena[%c0][] {moe.panels = #moe.panels<cols = 16, lanes = 8>} : memref<16384xi8> to memref<4x32x64xbf16>
  %w = bufferization.to_tensor %v restrict : memref<4x32x64xbf16> to tensor<4x32x64xbf16>
  %y = moe.grouped_matmul %x, %w, %o : (tensor<?x64xf32>, tensor<4x32x64xbf16>, tensor<5xi32>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}
