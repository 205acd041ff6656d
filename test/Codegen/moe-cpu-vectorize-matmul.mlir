// RUN: moe-opt %s -split-input-file -moe-cpu-vectorize-matmul="vector-width=16 tile-rows=4 tile-cols=4 block-cols=32" | FileCheck %s

#lhs = affine_map<(m, n, k) -> (m, k)>
#rhs = affine_map<(m, n, k) -> (n, k)>
#out = affine_map<(m, n, k) -> (m, n)>

// K = 40 = 2 * 16 + 8: an unmasked loop over K, then one masked step. 70 columns in blocks
// of 32 run in parallel; rows and columns use 4x4 register tiles, then 1-wide remainders.
// CHECK-LABEL: func.func @xwt
// CHECK-SAME:    (%[[X:.*]]: memref<?x40xf32>, %[[W:.*]]: memref<70x40xbf16>, %[[Y:.*]]: memref<?x70xf32>)
// CHECK:         %[[M:.*]] = memref.dim %[[X]], %{{.*}} : memref<?x40xf32>
// CHECK:         scf.parallel (%[[B:.*]]) = (%{{.*}}) to (%{{.*}}) step (%{{.*}})
// CHECK:           scf.for %[[M0:.*]] = %{{.*}} to %{{.*}} step %{{.*}}
// CHECK:             scf.for %[[N0:.*]] = %{{.*}} to %{{.*}} step %{{.*}}
// CHECK:               scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(
// CHECK-COUNT-4:         vector.load %[[X]][%{{.*}}, %[[K]]] : memref<?x40xf32>, vector<16xf32>
// CHECK-COUNT-4:         vector.load %[[W]][%{{.*}}, %[[K]]] : memref<70x40xbf16>, vector<16xbf16>
// CHECK:                 arith.extf %{{.*}} : vector<16xbf16> to vector<16xf32>
// CHECK-COUNT-16:        vector.fma %{{.*}} : vector<16xf32>
// CHECK:                 scf.yield
// CHECK:               %[[MASK:.*]] = vector.constant_mask [8] : vector<16xi1>
// CHECK:               vector.maskedload %[[X]][%{{.*}}], %[[MASK]], %{{.*}} : memref<?x40xf32>, vector<16xi1>, vector<16xf32> into vector<16xf32>
// CHECK:               vector.reduction <add>, %{{.*}} fastmath<reassoc> : vector<16xf32> into f32
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
