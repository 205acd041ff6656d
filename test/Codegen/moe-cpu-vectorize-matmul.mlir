// RUN: moe-opt %s -split-input-file -moe-cpu-vectorize-matmul="vector-width=16 tile-rows=4 tile-cols=4 block-cols=32" | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-cpu-vectorize-matmul="vector-width=4 tile-rows=2 tile-cols=2 gemm-min-rows=8 gemm-rows=3 gemm-cols=8 gemm-epilogues=true" -canonicalize -cse | FileCheck %s --check-prefix=GEMM
// RUN: moe-opt %s -split-input-file -moe-cpu-vectorize-matmul="vector-width=4 tile-rows=2 tile-cols=2 gemm-min-rows=8 gemm-rows=3 gemm-cols=8 gemm-epilogues=false" | FileCheck %s --check-prefix=UNFUSED
// RUN: moe-opt %s -split-input-file -moe-cpu-vectorize-matmul="vector-width=4 tile-rows=2 tile-cols=2 gemm-min-rows=8 gemm-rows=3 gemm-cols=8" -verify-diagnostics -o /dev/null
// RUN: moe-opt %s -split-input-file --pass-pipeline="builtin.module(func.func(moe-cpu-vectorize-matmul{vector-width=4 tile-rows=2 tile-cols=2 gemm-min-rows=8 gemm-rows=3 gemm-cols=8 gemm-epilogues=true}))" | FileCheck %s --check-prefix=NESTED
// RUN: moe-opt %s -split-input-file -moe-cpu-vectorize-matmul="vector-width=4 tile-rows=2 tile-cols=2 gemm-min-rows=8 gemm-rows=3 gemm-cols=8 gemm-epilogues=true gemm-widen-panels=true" -canonicalize -cse | FileCheck %s --check-prefix=WIDEN
// RUN: not moe-opt %s -split-input-file -moe-cpu-vectorize-matmul="vector-width=6" 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: not moe-opt %s -split-input-file -moe-cpu-vectorize-matmul="vector-width=8 gemm-cols=12" 2>&1 | FileCheck %s --check-prefix=BAD
// BAD: error: moe-cpu-vectorize-matmul: vector-width must be a power of two and gemm-cols a multiple of it

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// K = 40 = 2 * 16 + 8: an unmasked loop over K, then one masked step. 70 columns in blocks
// of 32 run in parallel; rows and columns use 4x4 register tiles, then 1-wide remainders.
// CHECK-LABEL: func.func @xwt
// CHECK-SAME:    (%[[X:.*]]: memref<?x40xf32>, %[[W:.*]]: memref<70x40xbf16>, %[[Y:.*]]: memref<?x70xf32>)
// CHECK:         %[[M:.*]] = memref.dim %[[X]], %{{.*}} : memref<?x40xf32>
// No rows (an expert without tokens), no parallel region.
// CHECK:         %[[ANY:.*]] = arith.cmpi ne, %[[M]], %{{.*}} : index
// CHECK:         scf.if %[[ANY]] {
// CHECK:         scf.parallel (%[[B:.*]]) = (%{{.*}}) to (%{{.*}}) step (%{{.*}})
// CHECK:           scf.for %[[M0:.*]] = %{{.*}} to %{{.*}} step %{{.*}}
// CHECK:             scf.for %[[N0:.*]] = %{{.*}} to %{{.*}} step %{{.*}}
// CHECK:               scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(
// CHECK-COUNT-4:         vector.load %[[X]][%{{.*}}, %[[K]]] : memref<?x40xf32>, vector<16xf32>
// CHECK-COUNT-4:         vector.load %[[W]][%{{.*}}, %[[K]]] : memref<70x40xbf16>, vector<16xbf16>
// CHECK:                 arith.extf %{{.*}} : vector<16xbf16> to vector<16xf32>
// CHECK-COUNT-16:        vector.fma %{{.*}} : vector<16xf32>
// CHECK:                 scf.yield
// Tiles of up to 4 outputs (single rows: decode) widen bf16 as even and odd k: one load of
// 16 bf16 as 8 i32, a shift and a mask; x split alike; lane l's chain in lane l / 2 of the
// even or odd half, put back in lane order after the loop.
// CHECK:               scf.for %[[K1:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(
// CHECK:                 %[[XV:.*]] = vector.load %[[X]][%{{.*}}, %[[K1]]] : memref<?x40xf32>, vector<16xf32>
// CHECK:                 vector.shuffle %[[XV]], %[[XV]] [0, 2, 4, 6, 8, 10, 12, 14]
// CHECK:                 vector.shuffle %[[XV]], %[[XV]] [1, 3, 5, 7, 9, 11, 13, 15]
// CHECK:                 %[[WV:.*]] = vector.load %[[W]][%{{.*}}, %[[K1]]] : memref<70x40xbf16>, vector<16xbf16>
// CHECK:                 %[[WORDS:.*]] = vector.bitcast %[[WV]] : vector<16xbf16> to vector<8xi32>
// CHECK:                 arith.shli %[[WORDS]], %{{.*}} : vector<8xi32>
// CHECK:                 arith.andi %[[WORDS]], %{{.*}} : vector<8xi32>
// CHECK-NOT:             arith.extf
// CHECK-COUNT-8:         vector.fma %{{.*}} : vector<8xf32>
// CHECK:                 scf.yield
// CHECK:               vector.shuffle %{{.*}}, %{{.*}} [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15] : vector<8xf32>, vector<8xf32>
// CHECK:               %[[MASK:.*]] = vector.constant_mask [8] : vector<16xi1>
// CHECK:               vector.maskedload %[[X]][%{{.*}}], %[[MASK]], %{{.*}} : memref<?x40xf32>, vector<16xi1>, vector<16xf32> into vector<16xf32>
// The horizontal add is a fixed halving tree (lanes l and l + 8 first), not vector.reduction,
// whose order LLVM chooses: the GEMM below must round alike.
// CHECK:               %[[LO:.*]] = vector.extract_strided_slice %[[ACC:.*]] {offsets = [0], sizes = [8], strides = [1]} : vector<16xf32> to vector<8xf32>
// CHECK:               %[[HI:.*]] = vector.extract_strided_slice %[[ACC]] {offsets = [8], sizes = [8], strides = [1]} : vector<16xf32> to vector<8xf32>
// CHECK:               arith.addf %[[LO]], %[[HI]] : vector<8xf32>
// CHECK-NOT:           vector.reduction
// CHECK:               memref.load %[[Y]]
// CHECK:               memref.store %{{.*}}, %[[Y]]
// CHECK-NOT:     linalg.matmul
func.func @xwt(%x: memref<?x40xf32>, %w: memref<70x40xbf16>, %y: memref<?x70xf32>) {
  linalg.matmul indexing_maps = [#lhs, #rhs, #out]
      ins(%x, %w : memref<?x40xf32>, memref<70x40xbf16>) outs(%y : memref<?x70xf32>)
  return
}

// -----

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// Weights read through a strided view of a stacked expert tensor are fine (unit stride in K).
// CHECK-LABEL: func.func @expert_slice
// CHECK:         scf.parallel
// CHECK:           vector.load %{{.*}} : memref<32x64xf32, strided<[64, 1], offset: ?>>, vector<16xf32>
func.func @expert_slice(%x: memref<?x64xf32>, %w: memref<32x64xf32, strided<[64, 1], offset: ?>>,
                        %y: memref<?x32xf32>) {
  linalg.matmul indexing_maps = [#lhs, #rhs, #out]
      ins(%x, %w : memref<?x64xf32>, memref<32x64xf32, strided<[64, 1], offset: ?>>)
      outs(%y : memref<?x32xf32>)
  return
}

// -----

// A plain matmul (weights [K, N]) is not this kernel's shape and stays.
// CHECK-LABEL: func.func @not_transposed
// CHECK:         linalg.matmul
// CHECK-NOT:     scf.parallel
func.func @not_transposed(%x: memref<?x64xf32>, %w: memref<64x32xf32>, %y: memref<?x32xf32>) {
  linalg.matmul ins(%x, %w : memref<?x64xf32>, memref<64x32xf32>) outs(%y : memref<?x32xf32>)
  return
}

// -----

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// With gemm-min-rows, K % width == 0 and N % gemm-cols == 0: calls of 8 rows or more take the
// packed GEMM, fewer the dot-product kernel. The GEMM is one private function per module and
// element types (the call passes base buffers, offsets, sizes and row strides: the bare-pointer
// convention passes no dynamic memref), kept out of line (noinline), with internal linkage
// (two modules may be linked into one program). x is widened into a
// lane-split scratch with the 3 rows of a tile interleaved; each 8-column panel of W is widened
// and transposed (shuffles) into a [K, 8] scratch; 3x8 outer-product microkernels (broadcast x,
// 2 FMAs per row and step) with one FMA chain per lane l, saved per lane, the lane loop outside
// the loop over a block of tiles (K blocking); the same halving tree across lanes, row by row,
// for the real rows only. The tiles are of 3 rows, the last ones of 2 where that saves padding
// rows; a tile's missing rows are zeros in the scratch (no 1-row microkernel).
// CHECK-LABEL: func.func @gemm(
// GEMM-LABEL: func.func @gemm(
// GEMM-SAME:    %[[X:.*]]: memref<?x32xf32>, %[[W:.*]]: memref<32x32xbf16>, %[[Y:.*]]: memref<?x32xf32>)
// GEMM:         %[[M:.*]] = memref.dim %[[X]], %{{.*}} : memref<?x32xf32>
// GEMM:         %[[MANY:.*]] = arith.cmpi uge, %[[M]], %{{.*}} : index
// GEMM:         scf.if %[[MANY]] {
// GEMM:           %[[XB:[^,]*]], %{{[^,]*}}, %[[XS:[^:]*]]:2, %{{.*}} = memref.extract_strided_metadata %[[X]]
// GEMM:           %[[WB:[^,]*]], %{{.*}} = memref.extract_strided_metadata %[[W]]
// GEMM:           %[[YB:[^,]*]], %{{.*}} = memref.extract_strided_metadata %[[Y]]
// GEMM:           func.call @__moe_gemm_f32_bf16_3x8(%[[XB]], %[[C0:[^,]*]], %[[XS]]#0, %[[C32:[^,]*]], %[[C32]], %[[WB]], %[[C0]], %[[C32]], %[[C32]], %[[YB]], %[[C0]], %[[C32]])
// GEMM-SAME:        : (memref<f32>, index, index, index, index, memref<bf16>, index, index, index, memref<f32>, index, index) -> ()
// GEMM:         } else {
// GEMM:           vector.load %[[X]]
// GEMM-NOT:     linalg.matmul
// Run on a function rather than a module, the pass cannot add functions: the GEMM goes inline.
// NESTED-LABEL: func.func @gemm(
// NESTED-NOT:     func.call
// NESTED:         memref.alloc(%{{.*}}, %{{.*}}) {alignment = 64 : i64} : memref<?x?x3xf32>
// NESTED:         } else {
// NESTED-NOT:   func.func private
// GEMM-LABEL: func.func private @__moe_gemm_f32_bf16_3x8(
// GEMM-SAME:    %[[XB:[^:]*]]: memref<f32>, %[[XO:[^:]*]]: index, %[[M:[^:]*]]: index, %[[K:[^:]*]]: index, %[[XLD:[^:]*]]: index,
// GEMM-SAME:    %[[WB:[^:]*]]: memref<bf16>, %[[WO:[^:]*]]: index, %[[N:[^:]*]]: index, %[[WLD:[^:]*]]: index,
// GEMM-SAME:    %[[YB:[^:]*]]: memref<f32>, %[[YO:[^:]*]]: index, %[[YLD:[^:]*]]: index)
// GEMM-SAME:    attributes {llvm.linkage = #llvm.linkage<internal>, passthrough = ["noinline"]}
// GEMM:         %[[X:.*]] = memref.reinterpret_cast %[[XB]] to offset: [%[[XO]]], sizes: [%[[M]], %[[K]]], strides: [%[[XLD]], 1]
// GEMM:         %[[W:.*]] = memref.reinterpret_cast %[[WB]] to offset: [%[[WO]]], sizes: [%[[N]], %[[K]]], strides: [%[[WLD]], 1]
// GEMM:         %[[Y:.*]] = memref.reinterpret_cast %[[YB]] to offset: [%[[YO]]], sizes: [%[[M]], %[[N]]], strides: [%[[YLD]], 1]
// GEMM:         %[[TILES:.*]] = arith.divui %{{.*}}, %c3
// The tile plan: as many 2-row tiles at the end as rows of padding 3-row tiles would need.
// GEMM:         %[[ROUNDED:.*]] = arith.muli %[[TILES]], %c3
// GEMM:         %[[PAD:.*]] = arith.subi %[[ROUNDED]], %[[M:[^ ]*]]
// GEMM:         %[[SHORT:.*]] = arith.minui %[[PAD]], %[[TILES]]
// GEMM:         %[[FULL:.*]] = arith.subi %[[TILES]], %[[SHORT]]
// GEMM:         %[[PADDED:.*]] = arith.subi %[[ROUNDED]], %{{.*}}
// GEMM:         %[[AP:.*]] = memref.alloc(%[[TILES]], %{{.*}}) {alignment = 64 : i64} : memref<?x?x3xf32>
// GEMM:         scf.parallel (%[[R:.*]]) = (%{{.*}}) to (%[[M]])
// GEMM:           vector.load %[[X]][%[[R]], %{{.*}}] : memref<?x?xf32, strided<[?, 1], offset: ?>>, vector<4xf32>
// GEMM-COUNT-4:   memref.store %{{.*}}, %[[AP]][%{{.*}}, %{{.*}}, %{{.*}}] : memref<?x?x3xf32>
// GEMM:         scf.for %{{.*}} = %[[M]] to %[[PADDED]]
// GEMM:             memref.store %[[ZERO:.*]], %[[AP]]
// GEMM:         scf.parallel (%[[P:.*]]) = (%{{.*}}) to (%{{.*}})
// GEMM:           %[[PANEL:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
// GEMM:           %[[PART:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4x384x8xf32>
// GEMM:           scf.for
// GEMM-COUNT-4:     vector.load %[[W]]{{.*}} : memref<?x?xbf16, strided<[?, 1], offset: ?>>, vector<4xbf16>
// GEMM-COUNT-8:     vector.shuffle
// GEMM:             vector.store %{{.*}}, %[[PANEL]]{{.*}} : memref<?x8xf32>, vector<4xf32>
// GEMM:           scf.for %[[T0:.*]] = %{{.*}} to %[[TILES]] step %c128
// GEMM:             scf.for %[[L:.*]] =
// GEMM:               scf.for %[[T:.*]] = %[[T0]] to
// GEMM:                 %[[ISFULL:.*]] = arith.cmpi ult, %[[T]], %[[FULL]]
// GEMM:                 scf.if %[[ISFULL]] {
// GEMM:                   scf.for %{{.*}} iter_args({{.*}}) -> (vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>)
// GEMM:                     %[[B0:.*]] = vector.load %[[PANEL]]{{.*}} : memref<?x8xf32>, vector<4xf32>
// GEMM:                     %[[B1:.*]] = vector.load %[[PANEL]]{{.*}} : memref<?x8xf32>, vector<4xf32>
// GEMM:                     %[[A0:.*]] = memref.load %[[AP]][%[[T]], {{.*}}] : memref<?x?x3xf32>
// GEMM:                     %[[S0:.*]] = vector.broadcast %[[A0]] : f32 to vector<4xf32>
// GEMM:                     vector.fma %[[S0]], %[[B0]], %{{.*}} : vector<4xf32>
// GEMM:                     vector.fma %[[S0]], %[[B1]], %{{.*}} : vector<4xf32>
// GEMM-COUNT-4:             vector.fma
// GEMM:                     scf.yield
// GEMM-COUNT-6:           vector.store %{{.*}}, %[[PART]][%[[L]], {{.*}}] : memref<4x384x8xf32>, vector<4xf32>
// GEMM:                 } else {
// GEMM:                   scf.for %{{.*}} iter_args({{.*}}) -> (vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>)
// GEMM-COUNT-4:             vector.fma
// GEMM:                     scf.yield
// GEMM-COUNT-4:           vector.store %{{.*}}, %[[PART]][%[[L]], {{.*}}] : memref<4x384x8xf32>, vector<4xf32>
// GEMM:             %[[MEND:.*]] = arith.minui %{{.*}}, %[[M]]
// GEMM:             scf.for %[[I:.*]] = %{{.*}} to %[[MEND]]
// GEMM:               %[[P0:.*]] = vector.load %[[PART]][%{{.*}}, %{{.*}}, %{{.*}}]
// GEMM:               %[[P1:.*]] = vector.load %[[PART]]
// GEMM:               %[[P2:.*]] = vector.load %[[PART]]
// GEMM:               %[[P3:.*]] = vector.load %[[PART]]
// GEMM:               %[[Q0:.*]] = arith.addf %[[P0]], %[[P2]] : vector<4xf32>
// GEMM:               %[[Q1:.*]] = arith.addf %[[P1]], %[[P3]] : vector<4xf32>
// GEMM:               %[[SUM:.*]] = arith.addf %[[Q0]], %[[Q1]] : vector<4xf32>
// GEMM:               %[[OLD:.*]] = vector.load %[[Y]][%[[I]],
// GEMM:               %[[NEW:.*]] = arith.addf %[[OLD]], %[[SUM]] : vector<4xf32>
// GEMM:               vector.store %[[NEW]], %[[Y]][%[[I]],
// GEMM-NOT:       vector.fma
// GEMM:           memref.dealloc %[[PART]]
// GEMM:           memref.dealloc %[[PANEL]]
// GEMM:         memref.dealloc %[[AP]]
// GEMM:         return
func.func @gemm(%x: memref<?x32xf32>, %w: memref<32x32xbf16>, %y: memref<?x32xf32>) {
  linalg.matmul indexing_maps = [#lhs, #rhs, #out]
      ins(%x, %w : memref<?x32xf32>, memref<32x32xbf16>) outs(%y : memref<?x32xf32>)
  return
}

// -----

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// N = 36 is not a multiple of gemm-cols (8): the dot-product kernel alone, whatever the rows.
// CHECK-LABEL: func.func @gemm_unfit_n
// GEMM-LABEL: func.func @gemm_unfit_n
// GEMM-NOT:     call
// GEMM-NOT:     memref.alloc
// GEMM:         %[[ANY:.*]] = arith.cmpi ne
// GEMM-NEXT:    scf.if %[[ANY]] {
// GEMM-NEXT:      scf.parallel
// GEMM-NOT:     memref.alloc
func.func @gemm_unfit_n(%x: memref<?x32xf32>, %w: memref<36x32xf32>, %y: memref<?x36xf32>) {
  linalg.matmul indexing_maps = [#lhs, #rhs, #out]
      ins(%x, %w : memref<?x32xf32>, memref<36x32xf32>) outs(%y : memref<?x36xf32>)
  return
}

// -----

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// Sites with the same element types share one GEMM function whatever their N and K (the
// sizes travel as arguments); other weight types get their own.
// CHECK-LABEL: func.func @gemm_shared
// GEMM-LABEL: func.func @gemm_shared
// GEMM:         call @[[BF16:__moe_gemm_f32_bf16_3x8]](
// GEMM:         call @[[BF16]](
// GEMM:         call @[[F32:__moe_gemm_f32_f32_3x8]](
// GEMM:       func.func private @[[BF16]](
// GEMM-NOT:   func.func private @[[BF16]]
// GEMM:       func.func private @[[F32]](
// GEMM-NOT:   func.func
func.func @gemm_shared(%x: memref<?x32xf32>, %w: memref<16x32xbf16>, %y: memref<?x16xf32>,
                       %h: memref<?x64xf32>, %w2: memref<32x64xbf16>, %z: memref<?x32xf32>,
                       %w3: memref<16x32xf32>) {
  linalg.matmul indexing_maps = [#lhs, #rhs, #out]
      ins(%x, %w : memref<?x32xf32>, memref<16x32xbf16>) outs(%y : memref<?x16xf32>)
  linalg.matmul indexing_maps = [#lhs, #rhs, #out]
      ins(%h, %w2 : memref<?x64xf32>, memref<32x64xbf16>) outs(%z : memref<?x32xf32>)
  linalg.matmul indexing_maps = [#lhs, #rhs, #out]
      ins(%x, %w3 : memref<?x32xf32>, memref<16x32xf32>) outs(%y : memref<?x16xf32>)
  return
}

// -----

// A matmul over weights in panel order (#moe.panels, from moe-lower-to-linalg): rows >=
// gemm-min-rows call the shared GEMM, which reads the panels in place (no panel scratch: the
// weights are loaded in their storage type and widened in registers, bf16 rows of two
// vectors as even and odd columns by a shift and a mask, the tile's sums put back in column
// order when stored; the next panel prefetched); fewer rows take the panel GEMV with the
// same chains and tree (bf16 rows split the same way; none of it for a call without rows).
// GEMM-LABEL: func.func @panels
// GEMM-SAME:    (%[[X:.*]]: memref<?x16xf32>, %[[W:.*]]: memref<2x16x8xbf16>, %[[Y:.*]]: memref<?x16xf32>)
// GEMM:         scf.if
// GEMM:           call @__moe_gemm_f32_bf16_panels_3x8(
// GEMM:         } else {
// GEMM:           %[[ANY:.*]] = arith.cmpi ne, %{{.*}}, %{{.*}} : index
// GEMM:           scf.if %[[ANY]] {
// GEMM:             scf.parallel
// GEMM:               memref.subview %[[W]]
// GEMM:               %[[CHAINS:.*]] = memref.alloc() {alignment = 64 : i64} : memref<8x4xf32>
// GEMM:               scf.for
// GEMM:                 scf.for %{{.*}} iter_args(
// GEMM:                   %[[PROW:.*]] = vector.load %{{.*}} : memref<16x8xbf16, strided<[8, 1], offset: ?>>, vector<8xbf16>
// GEMM:                   %[[PW:.*]] = vector.bitcast %[[PROW]] : vector<8xbf16> to vector<4xi32>
// GEMM:                   arith.shli %[[PW]]
// GEMM:                   arith.andi %[[PW]]
// GEMM-NOT:               arith.extf
// GEMM:                   vector.fma
// GEMM:                   vector.fma
// GEMM:                 vector.store %{{.*}}, %[[CHAINS]]
// GEMM:                 vector.shuffle %{{.*}}, %{{.*}} [0, 4, 1, 5]
// GEMM:                 vector.shuffle %{{.*}}, %{{.*}} [2, 6, 3, 7]
// GEMM-NOT:     linalg.generic
// GEMM-LABEL: func.func private @__moe_gemm_f32_bf16_panels_3x8
// GEMM-NOT:       memref.alloc({{.*}}) {{.*}} : memref<?x8xf32>
// GEMM:           memref.prefetch %{{.*}}[%{{.*}}, %{{.*}}], read, locality<2>, data : memref<?x8xbf16, strided<[8, 1], offset: ?>>
// GEMM:           %[[ROW:.*]] = vector.load %{{.*}} : memref<?x8xbf16, strided<[8, 1], offset: ?>>, vector<8xbf16>
// GEMM:           %[[WORDS:.*]] = vector.bitcast %[[ROW]] : vector<8xbf16> to vector<4xi32>
// GEMM:           %[[EVEN:.*]] = arith.shli %[[WORDS]]
// GEMM:           %[[ODD:.*]] = arith.andi %[[WORDS]]
// GEMM:           vector.bitcast %[[EVEN]] : vector<4xi32> to vector<4xf32>
// GEMM:           vector.bitcast %[[ODD]] : vector<4xi32> to vector<4xf32>
// GEMM:           vector.fma
// GEMM:           vector.shuffle %{{.*}}, %{{.*}} [0, 4, 1, 5]
// GEMM:           vector.shuffle %{{.*}}, %{{.*}} [2, 6, 3, 7]
// With gemm-widen-panels, calls of 32 rows or more widen each bf16 panel once into an f32
// scratch panel (the values arith.extf gives in registers) and the microkernel reads that, in
// column order; fewer rows keep the in-place kernel.
// WIDEN-LABEL: func.func private @__moe_gemm_f32_bf16_panels_3x8
// WIDEN:         %[[C32:.*]] = arith.constant 32 : index
// WIDEN:         %[[MANY:.*]] = arith.cmpi uge, %{{.*}}, %[[C32]] : index
// WIDEN-NEXT:    scf.if %[[MANY]] {
// WIDEN:         scf.parallel
// WIDEN:           %[[P:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
// WIDEN:           %[[SRC:.*]] = memref.subview
// WIDEN:           scf.for %[[R:.*]] =
// WIDEN-NEXT:        %[[B0:.*]] = vector.load %[[SRC]][%[[R]], %{{.*}}] : memref<?x8xbf16, strided<[8, 1], offset: ?>>, vector<4xbf16>
// WIDEN-NEXT:        %[[F0:.*]] = arith.extf %[[B0]] : vector<4xbf16> to vector<4xf32>
// WIDEN-NEXT:        vector.store %[[F0]], %[[P]][%[[R]], %{{.*}}] : memref<?x8xf32>, vector<4xf32>
// WIDEN-NOT:       arith.shli
// WIDEN:           vector.load %[[P]][%{{.*}}] : memref<?x8xf32>, vector<4xf32>
// WIDEN:           vector.fma
// WIDEN-NOT:       vector.shuffle
// WIDEN:           memref.dealloc %[[P]]
// WIDEN:         } else {
// WIDEN:           arith.shli
#lhs = affine_map<(m, n, k) -> (m, k)>
#pw = affine_map<(m, n, k) -> (n floordiv 8, (k mod 4) * 4 + k floordiv 4, n mod 8)>
#out = affine_map<(m, n, k) -> (m, n)>
func.func @panels(%x: memref<?x16xf32>, %w: memref<2x16x8xbf16>, %y: memref<?x16xf32>) {
  linalg.generic {indexing_maps = [#lhs, #pw, #out], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x16xf32>, memref<2x16x8xbf16>) outs(%y : memref<?x16xf32>)
      attrs = {moe.panels = #moe.panels<cols = 8, lanes = 4>} {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %bw = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %bw : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Panels of another shape than the kernel's (cols 16, not gemm-cols 8) stay a generic,
// which the loop lowering computes as written: correct, not fast, and the pass warns.
// GEMM-LABEL: func.func @other_panels
// GEMM:         linalg.generic
// GEMM-SAME:      moe.panels = #moe.panels<cols = 16, lanes = 4>
#lhs = affine_map<(m, n, k) -> (m, k)>
#pw = affine_map<(m, n, k) -> (n floordiv 16, (k mod 4) * 4 + k floordiv 4, n mod 16)>
#out = affine_map<(m, n, k) -> (m, n)>
func.func @other_panels(%x: memref<?x16xf32>, %w: memref<1x16x16xbf16>, %y: memref<?x16xf32>) {
  // expected-warning @below {{weights in panel order of 16 columns on 4 lanes, but this pipeline's GEMM panel is 8 columns on 4 lanes: left to the generic loops (correct, far slower); pack the weights for this target}}
  linalg.generic {indexing_maps = [#lhs, #pw, #out], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w : memref<?x16xf32>, memref<1x16x16xbf16>) outs(%y : memref<?x16xf32>)
      attrs = {moe.panels = #moe.panels<cols = 16, lanes = 4>} {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %bw = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %bw : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// moe.grouped_swiglu's expert body after bufferization (moe-lower-to-linalg, then
// one-shot-bufferize): the gate and up GEMMs over panels into zero-filled scratch (one fill,
// one copy of it) and the elementwise SwiGLU reading both. Rows >= gemm-min-rows call one
// GEMM that reads both weights' panels and computes the generic's body in its epilogue, so
// the scratch buffers are gone on that path; fewer rows run the ops as they were.
// GEMM-LABEL: func.func @swiglu_epilogue
// GEMM-SAME:    (%[[X:.*]]: memref<?x16xf32>, %[[W1:.*]]: memref<2x16x8xbf16>, %[[W3:.*]]: memref<2x16x8xbf16>, %[[H:.*]]: memref<?x16xf32>)
// GEMM:         scf.if
// GEMM-NEXT:      %[[XB:[a-z_0-9]+]], {{.*}} = memref.extract_strided_metadata %[[X]]
// GEMM:           call @__moe_gemm_swiglu_f32_bf16_f32_panels_3x8(%[[XB]],
// GEMM-NOT:       memref.alloc
// GEMM:         } else {
// GEMM:           %[[UP:.*]] = memref.alloc
// GEMM:           linalg.fill {{.*}} outs(%[[UP]]
// GEMM:           %[[GATE:.*]] = memref.alloc
// GEMM:           memref.copy %[[UP]], %[[GATE]]
// GEMM:           scf.parallel
// GEMM:             memref.subview %[[W1]]
// GEMM:             vector.store %{{.*}}, %[[GATE]]
// GEMM:           scf.parallel
// GEMM:             memref.subview %[[W3]]
// GEMM:             vector.store %{{.*}}, %[[UP]]
// GEMM:           linalg.generic {{.*}} ins(%[[GATE]], %[[UP]] : {{.*}}) outs(%[[H]] :
// GEMM:             math.exp
// GEMM:           memref.dealloc
// GEMM:           memref.dealloc
// GEMM:         }
// GEMM-NEXT:    return
// GEMM-LABEL: func.func private @__moe_gemm_swiglu_f32_bf16_f32_panels_3x8
// GEMM:           %[[Z:.*]] = arith.constant dense<0.000000e+00> : vector<4xf32>
// Per step 3 x (4 + 4): the same vector of columns (even ones, then odd ones) of both
// weights' panels.
// GEMM:           %[[G:.*]] = vector.bitcast %{{.*}} : vector<8xbf16> to vector<4xi32>
// GEMM:           %[[GE:.*]] = arith.shli %[[G]]
// GEMM:           %[[U:.*]] = vector.bitcast %{{.*}} : vector<8xbf16> to vector<4xi32>
// GEMM:           %[[UE:.*]] = arith.shli %[[U]]
// GEMM-COUNT-6:   vector.fma
// GEMM:           arith.andi
// GEMM:           arith.andi
// GEMM-COUNT-6:   vector.fma
// The epilogue: per weight the tree and + 0 (as into the zero-filled scratch), then SwiGLU
// per element as the generic computes it (column 0 is gate's even vector's lane 0).
// GEMM:           %[[GV:.*]] = arith.addf %{{.*}}, %[[Z]] : vector<4xf32>
// GEMM:           %[[UV:.*]] = arith.addf %{{.*}}, %[[Z]] : vector<4xf32>
// GEMM:           %[[GS:.*]] = vector.extract %[[GV]][0] : f32 from vector<4xf32>
// GEMM:           %[[US:.*]] = vector.extract %[[UV]][0] : f32 from vector<4xf32>
// GEMM:           %[[NEG:.*]] = arith.negf %[[GS]] : f32
// GEMM:           %[[EXP:.*]] = math.exp %[[NEG]] : f32
// GEMM:           %[[DEN:.*]] = arith.addf %[[EXP]], %{{.*}} : f32
// GEMM:           %[[SILU:.*]] = arith.divf %[[GS]], %[[DEN]] : f32
// GEMM:           %[[Y0:.*]] = arith.mulf %[[SILU]], %[[US]] : f32
// GEMM:           %[[Y:.*]] = vector.from_elements %[[Y0]],
// GEMM:           vector.store %[[Y]], {{.*}} : memref<?x?xf32, strided<[?, 1], offset: ?>>, vector<4xf32>
// Widened, the pair GEMM widens a panel of each weight and reads both scratch panels.
// WIDEN-LABEL: func.func private @__moe_gemm_swiglu_f32_bf16_f32_panels_3x8
// WIDEN:         scf.parallel
// WIDEN:           %[[P1:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
// WIDEN:           arith.extf %{{.*}} : vector<4xbf16> to vector<4xf32>
// WIDEN:           %[[P3:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
// WIDEN:           arith.extf %{{.*}} : vector<4xbf16> to vector<4xf32>
// WIDEN-NOT:       arith.shli
// WIDEN:           %[[G:.*]] = vector.load %[[P1]][%{{.*}}] : memref<?x8xf32>, vector<4xf32>
// WIDEN:           %[[U:.*]] = vector.load %[[P3]][%{{.*}}] : memref<?x8xf32>, vector<4xf32>
// WIDEN:           vector.fma %{{.*}}, %[[G]]
// WIDEN:           vector.fma %{{.*}}, %[[U]]
// WIDEN:           math.exp
// WIDEN:           memref.dealloc %[[P1]]
// WIDEN:           memref.dealloc %[[P3]]
// With gemm-epilogues=false the two GEMMs and the generic stay apart.
// UNFUSED-LABEL: func.func @swiglu_epilogue
// UNFUSED-NOT:     __moe_gemm_swiglu
// UNFUSED:         call @__moe_gemm_f32_bf16_panels_3x8(
// UNFUSED-NOT:     __moe_gemm_swiglu
// UNFUSED:         call @__moe_gemm_f32_bf16_panels_3x8(
// UNFUSED-NOT:     __moe_gemm_swiglu
// UNFUSED:         linalg.generic
// UNFUSED:           math.exp
#lhs = affine_map<(m, n, k) -> (m, k)>
#pw = affine_map<(m, n, k) -> (n floordiv 8, (k mod 4) * 4 + k floordiv 4, n mod 8)>
#out = affine_map<(m, n, k) -> (m, n)>
#id = affine_map<(m, n) -> (m, n)>
func.func @swiglu_epilogue(%x: memref<?x16xf32>, %w1: memref<2x16x8xbf16>,
                           %w3: memref<2x16x8xbf16>, %h: memref<?x16xf32>) {
  %c0 = arith.constant 0 : index
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %rows = memref.dim %x, %c0 : memref<?x16xf32>
  %up = memref.alloc(%rows) {alignment = 64 : i64} : memref<?x16xf32>
  linalg.fill ins(%zero : f32) outs(%up : memref<?x16xf32>)
  %gate = memref.alloc(%rows) {alignment = 64 : i64} : memref<?x16xf32>
  memref.copy %up, %gate : memref<?x16xf32> to memref<?x16xf32>
  linalg.generic {indexing_maps = [#lhs, #pw, #out], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w1 : memref<?x16xf32>, memref<2x16x8xbf16>) outs(%gate : memref<?x16xf32>)
      attrs = {moe.panels = #moe.panels<cols = 8, lanes = 4>} {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %bw = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %bw : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#lhs, #pw, #out], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w3 : memref<?x16xf32>, memref<2x16x8xbf16>) outs(%up : memref<?x16xf32>)
      attrs = {moe.panels = #moe.panels<cols = 8, lanes = 4>} {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %bw = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %bw : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%gate, %up : memref<?x16xf32>, memref<?x16xf32>) outs(%h : memref<?x16xf32>) {
  ^bb0(%g: f32, %u: f32, %o: f32):
    %n = arith.negf %g : f32
    %e = math.exp %n : f32
    %d = arith.addf %e, %one : f32
    %silu = arith.divf %g, %d : f32
    %y = arith.mulf %silu, %u : f32
    linalg.yield %y : f32
  }
  memref.dealloc %up : memref<?x16xf32>
  memref.dealloc %gate : memref<?x16xf32>
  return
}

// -----

// Not an epilogue: scratch that is not zero-filled (the GEMMs add to it), so the three ops
// stay apart and each GEMM is lowered on its own.
// GEMM-LABEL: func.func @swiglu_not_zero
// GEMM-NOT:     __moe_gemm_swiglu
// GEMM:         call @__moe_gemm_f32_bf16_panels_3x8(
// GEMM:         call @__moe_gemm_f32_bf16_panels_3x8(
// GEMM:         linalg.generic
// GEMM:           math.exp
#lhs = affine_map<(m, n, k) -> (m, k)>
#pw = affine_map<(m, n, k) -> (n floordiv 8, (k mod 4) * 4 + k floordiv 4, n mod 8)>
#out = affine_map<(m, n, k) -> (m, n)>
#id = affine_map<(m, n) -> (m, n)>
func.func @swiglu_not_zero(%x: memref<?x16xf32>, %w1: memref<2x16x8xbf16>,
                           %w3: memref<2x16x8xbf16>, %h: memref<?x16xf32>) {
  %c0 = arith.constant 0 : index
  %half = arith.constant 0.5 : f32
  %one = arith.constant 1.0 : f32
  %rows = memref.dim %x, %c0 : memref<?x16xf32>
  %up = memref.alloc(%rows) {alignment = 64 : i64} : memref<?x16xf32>
  linalg.fill ins(%half : f32) outs(%up : memref<?x16xf32>)
  %gate = memref.alloc(%rows) {alignment = 64 : i64} : memref<?x16xf32>
  memref.copy %up, %gate : memref<?x16xf32> to memref<?x16xf32>
  linalg.generic {indexing_maps = [#lhs, #pw, #out], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w1 : memref<?x16xf32>, memref<2x16x8xbf16>) outs(%gate : memref<?x16xf32>)
      attrs = {moe.panels = #moe.panels<cols = 8, lanes = 4>} {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %bw = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %bw : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#lhs, #pw, #out], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %w3 : memref<?x16xf32>, memref<2x16x8xbf16>) outs(%up : memref<?x16xf32>)
      attrs = {moe.panels = #moe.panels<cols = 8, lanes = 4>} {
  ^bb0(%a: f32, %b: bf16, %c: f32):
    %bw = arith.extf %b : bf16 to f32
    %p = arith.mulf %a, %bw : f32
    %s = arith.addf %c, %p : f32
    linalg.yield %s : f32
  }
  linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%gate, %up : memref<?x16xf32>, memref<?x16xf32>) outs(%h : memref<?x16xf32>) {
  ^bb0(%g: f32, %u: f32, %o: f32):
    %n = arith.negf %g : f32
    %e = math.exp %n : f32
    %d = arith.addf %e, %one : f32
    %silu = arith.divf %g, %d : f32
    %y = arith.mulf %silu, %u : f32
    linalg.yield %y : f32
  }
  memref.dealloc %up : memref<?x16xf32>
  memref.dealloc %gate : memref<?x16xf32>
  return
}
