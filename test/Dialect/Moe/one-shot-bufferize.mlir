// RUN: moe-opt %s -split-input-file -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" | FileCheck %s
// RUN: moe-opt %s -split-input-file -one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" -buffer-loop-hoisting | FileCheck %s --check-prefix=HOIST
// moe.kernel_call under upstream one-shot bufferization (its BufferizableOpInterface model):
// each output becomes the buffer the call writes in place, tensor.empty outputs become
// allocations, and an output whose old value is still read gets a copy first.

// CHECK-LABEL: func.func @chain
// CHECK-SAME:    (%[[X:.*]]: memref<?x64xf32>, %[[W:.*]]: memref<64xbf16>, %[[OUT:.*]]: memref<?x64xf32>)
// CHECK:         %[[T:.*]] = memref.dim %[[X]]
// CHECK:         %[[A:.*]] = memref.alloc(%[[T]]) {{.*}} : memref<?x64xf32>
// CHECK-NEXT:    moe.kernel_call "rms_norm" ins(%[[X]], %[[W]] : memref<?x64xf32>, memref<64xbf16>) outs(%[[A]] : memref<?x64xf32>) params {epsilon = 1.000000e-05 : f64}{{$}}
// CHECK-NEXT:    %[[B:.*]] = memref.alloc(%[[T]]) {{.*}} : memref<?x64xf32>
// CHECK-NEXT:    moe.kernel_call "rms_norm" ins(%[[A]], %[[W]] : memref<?x64xf32>, memref<64xbf16>) outs(%[[B]] : memref<?x64xf32>)
// CHECK-NEXT:    memref.copy %[[B]], %[[OUT]]
// CHECK-NEXT:    return
func.func @chain(%x: tensor<?x64xf32>, %w: tensor<64xbf16>, %out: memref<?x64xf32>) {
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x64xf32>
  %e = tensor.empty(%t) : tensor<?x64xf32>
  %y = moe.kernel_call "rms_norm" ins(%x, %w : tensor<?x64xf32>, tensor<64xbf16>)
      outs(%e : tensor<?x64xf32>) params {epsilon = 1.0e-05 : f64} -> tensor<?x64xf32>
  %e2 = tensor.empty(%t) : tensor<?x64xf32>
  %z = moe.kernel_call "rms_norm" ins(%y, %w : tensor<?x64xf32>, tensor<64xbf16>)
      outs(%e2 : tensor<?x64xf32>) params {epsilon = 1.0e-05 : f64} -> tensor<?x64xf32>
  bufferization.materialize_in_destination %z in restrict writable %out
      : (tensor<?x64xf32>, memref<?x64xf32>) -> ()
  return
}

// -----

// The pool is updated in place unless its old value is read afterwards: then the call
// writes a copy (outputs count as read, so the copy carries the rows it does not write).
// CHECK-LABEL: func.func @update_in_place
// CHECK-SAME:    (%[[U:.*]]: memref<4x8xf32>, %[[P:.*]]: memref<16x8xf32>)
// CHECK-NEXT:    moe.kernel_call "paged_kv_write" ins(%[[U]] : memref<4x8xf32>) outs(%[[P]] : memref<16x8xf32>)
// CHECK-NEXT:    return %[[P]]
func.func @update_in_place(%u: tensor<4x8xf32>, %pool: tensor<16x8xf32>) -> tensor<16x8xf32> {
  %p2 = moe.kernel_call "paged_kv_write" ins(%u : tensor<4x8xf32>)
      outs(%pool : tensor<16x8xf32>) -> tensor<16x8xf32>
  return %p2 : tensor<16x8xf32>
}

// CHECK-LABEL: func.func @update_read_later
// CHECK-SAME:    (%[[U:.*]]: memref<4x8xf32>, %[[P:.*]]: memref<16x8xf32>)
// CHECK-NEXT:    %[[C:.*]] = memref.alloc() {{.*}} : memref<16x8xf32>
// CHECK-NEXT:    memref.copy %[[P]], %[[C]]
// CHECK-NEXT:    moe.kernel_call "paged_kv_write" ins(%[[U]] : memref<4x8xf32>) outs(%[[C]] : memref<16x8xf32>)
// CHECK-NEXT:    return %[[C]], %[[P]]
func.func @update_read_later(%u: tensor<4x8xf32>, %pool: tensor<16x8xf32>)
    -> (tensor<16x8xf32>, tensor<16x8xf32>) {
  %p2 = moe.kernel_call "paged_kv_write" ins(%u : tensor<4x8xf32>)
      outs(%pool : tensor<16x8xf32>) -> tensor<16x8xf32>
  return %p2, %pool : tensor<16x8xf32>, tensor<16x8xf32>
}

// -----

// A layer loop: the body's scratch is allocated per iteration by bufferization, and
// upstream buffer-loop-hoisting makes it one allocation reused by every layer.
// CHECK-LABEL: func.func @layers
// CHECK:         scf.for %[[I:.*]] = {{.*}} iter_args(%[[H:.*]] = %{{.*}}) -> (memref<4x8xf32>)
// CHECK-NEXT:      %[[A:.*]] = memref.alloc() {{.*}} : memref<4x8xf32>
// CHECK-NEXT:      moe.kernel_call "attention" ins(%[[H]], %[[I]] : memref<4x8xf32>, index) outs(%[[A]] : memref<4x8xf32>)
// CHECK-NEXT:      linalg.add ins(%[[H]], %[[A]] : {{.*}}) outs(%[[H]] : memref<4x8xf32>)
// CHECK-NEXT:      scf.yield %[[H]]
// HOIST-LABEL: func.func @layers
// HOIST:         %[[A:.*]] = memref.alloc() {{.*}} : memref<4x8xf32>
// HOIST-NEXT:    scf.for %[[I:.*]] = {{.*}} iter_args(%[[H:.*]] = %{{.*}}) -> (memref<4x8xf32>)
// HOIST-NEXT:      moe.kernel_call "attention" ins(%[[H]], %[[I]] : memref<4x8xf32>, index) outs(%[[A]] : memref<4x8xf32>)
func.func @layers(%x: tensor<4x8xf32>, %n: index) -> tensor<4x8xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%h = %x) -> tensor<4x8xf32> {
    %e = tensor.empty() : tensor<4x8xf32>
    %a = moe.kernel_call "attention" ins(%h, %i : tensor<4x8xf32>, index)
        outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
    %s = linalg.add ins(%h, %a : tensor<4x8xf32>, tensor<4x8xf32>)
        outs(%h : tensor<4x8xf32>) -> tensor<4x8xf32>
    scf.yield %s : tensor<4x8xf32>
  }
  return %r : tensor<4x8xf32>
}
