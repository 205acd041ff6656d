// RUN: moe-opt %s -split-input-file -moe-cpu-lower-strided-copies | FileCheck %s

// Writing new keys into a slice of the cache: a strided target becomes linalg.copy.
// CHECK-LABEL: func.func @into_cache
// CHECK-SAME:    (%[[SRC:.*]]: memref<?x4x32xf32>, %[[DST:.*]]: memref<?x4x32xf32, strided<[128, 32, 1], offset: ?>>)
// CHECK:         linalg.copy ins(%[[SRC]] : memref<?x4x32xf32>) outs(%[[DST]] : memref<?x4x32xf32, strided<[128, 32, 1], offset: ?>>)
// CHECK-NOT:     memref.copy
func.func @into_cache(%src: memref<?x4x32xf32>, %dst: memref<?x4x32xf32, strided<[128, 32, 1], offset: ?>>) {
  memref.copy %src, %dst : memref<?x4x32xf32> to memref<?x4x32xf32, strided<[128, 32, 1], offset: ?>>
  return
}

// -----

// Identity layouts on both sides stay a memref.copy (a memcpy later).
// CHECK-LABEL: func.func @contiguous
// CHECK:         memref.copy
// CHECK-NOT:     linalg.copy
func.func @contiguous(%src: memref<?x8xf32>, %dst: memref<?x8xf32>) {
  memref.copy %src, %dst : memref<?x8xf32> to memref<?x8xf32>
  return
}
