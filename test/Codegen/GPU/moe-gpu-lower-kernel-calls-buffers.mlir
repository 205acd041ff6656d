// RUN: moe-opt %s -split-input-file -moe-gpu-lower-kernel-calls | FileCheck %s
// The host side on buffers, as one-shot bufferization and the deallocation pipeline leave it:
// every allocation, launch and free on the entry's stream, the static temporaries of the
// entry block as views of one arena (one gpu.alloc per call, freed at the return), the
// residual add in place, the KV cache update and the output as copy kernels over flattened
// views, and the wait on the last token before the return.

// CHECK-LABEL: func.func @decode_layer
// CHECK-SAME:    %[[X:arg0]]: memref<1x64xf32>, %[[W:arg1]]: memref<64xf32>, %[[CACHE:arg2]]: memref<8x64xf32>, %[[POS:arg3]]: index, %[[OUT:arg4]]: memref<1x64xf32>
// CHECK:         %[[S:.*]] = gpu.wait async
// CHECK:         %[[ARENA:.*]], %{{.*}} = gpu.alloc async [%[[S]]] () : memref<512xi8>
// CHECK:         %[[H:.*]] = memref.view %[[ARENA]][%{{.*}}][] : memref<512xi8> to memref<1x64xf32>
// CHECK-NOT:     gpu.alloc
// CHECK:         gpu.launch_func async [%[[S]]] @moec_kernels::@rms_norm
// CHECK:         %[[ROW:.*]] = memref.subview %[[CACHE]][%[[POS]], 0] [1, 64] [1, 1]
// CHECK:         %[[SRC:.*]] = memref.collapse_shape %[[H]] {{\[\[}}0, 1]] : memref<1x64xf32> into memref<64xf32>
// CHECK:         %[[DST:.*]] = memref.collapse_shape %[[ROW]] {{\[\[}}0, 1]] : memref<1x64xf32, strided<[64, 1], offset: ?>> into memref<64xf32, strided<[1], offset: ?>>
// CHECK:         gpu.launch_func async [%[[S]]] @moec_kernels::@copy {{.*}} args(%{{.*}}, %{{.*}}, %{{.*}} : index)
// CHECK:         %[[A:.*]] = memref.collapse_shape %[[X]]
// CHECK-NEXT:    %[[AC:.*]] = memref.cast %[[A]]
// CHECK:         %[[B:.*]] = memref.collapse_shape %[[H]]
// CHECK-NEXT:    %[[BC:.*]] = memref.cast %[[B]]
// CHECK:         %[[O:.*]] = memref.collapse_shape %[[X]]
// CHECK-NEXT:    %[[OC:.*]] = memref.cast %[[O]]
// CHECK:         gpu.launch_func async [%[[S]]] @moec_kernels::@add {{.*}} args(%[[AC]] : {{.*}}, %[[BC]] : {{.*}}, %[[OC]] : {{.*}}, %{{.*}} : index)
// CHECK:         gpu.launch_func async [%[[S]]] @moec_kernels::@copy
// CHECK-NOT:     gpu.dealloc
// CHECK:         %[[LAST:.*]] = gpu.dealloc async [%[[S]]] %[[ARENA]] : memref<512xi8>
// CHECK-NEXT:    gpu.wait [%[[LAST]]]
// CHECK-NEXT:    return
// CHECK-NOT:     memref.alloc
// CHECK:         gpu.module @moec_kernels
func.func @decode_layer(%x: memref<1x64xf32>, %w: memref<64xf32>, %cache: memref<8x64xf32>, %pos: index, %out: memref<1x64xf32>) {
  %h = memref.alloc() {alignment = 64 : i64} : memref<1x64xf32>
  moe.kernel_call "rms_norm" ins(%x, %w : memref<1x64xf32>, memref<64xf32>) outs(%h : memref<1x64xf32>) params {epsilon = 1.0e-05 : f64}
  %row = memref.subview %cache[%pos, 0] [1, 64] [1, 1] : memref<8x64xf32> to memref<1x64xf32, strided<[64, 1], offset: ?>>
  memref.copy %h, %row : memref<1x64xf32> to memref<1x64xf32, strided<[64, 1], offset: ?>>
  linalg.add ins(%x, %h : memref<1x64xf32>, memref<1x64xf32>) outs(%x : memref<1x64xf32>)
  memref.copy %x, %out : memref<1x64xf32> to memref<1x64xf32>
  memref.dealloc %h : memref<1x64xf32>
  return
}

// -----

// Prefill: a temporary of the layer loop whose size is known only inside it is allocated and
// freed in the body, on the same stream (no token chain through the loop, no host wait in it).
// CHECK-LABEL: func.func @prefill_loop
// CHECK:         %[[S:.*]] = gpu.wait async
// CHECK:         scf.for
// CHECK:           %[[T:.*]], %{{.*}} = gpu.alloc async [%[[S]]] (%{{.*}}) : memref<?x64xf32>
// CHECK:           gpu.launch_func async [%[[S]]] @moec_kernels::@rms_norm
// CHECK:           gpu.dealloc async [%[[S]]] %[[T]] : memref<?x64xf32>
// CHECK-NOT:       gpu.wait
// CHECK:         }
// CHECK:         gpu.wait [%{{.*}}]
// CHECK-NEXT:    return
func.func @prefill_loop(%x: memref<?x64xf32>, %w: memref<64xf32>, %out: memref<?x64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  scf.for %i = %c0 to %c2 step %c1 {
    %n = memref.dim %x, %c0 : memref<?x64xf32>
    %t = memref.alloc(%n) : memref<?x64xf32>
    moe.kernel_call "rms_norm" ins(%x, %w : memref<?x64xf32>, memref<64xf32>) outs(%t : memref<?x64xf32>) params {epsilon = 1.0e-05 : f64}
    memref.copy %t, %x : memref<?x64xf32> to memref<?x64xf32>
    memref.dealloc %t : memref<?x64xf32>
  }
  memref.copy %x, %out : memref<?x64xf32> to memref<?x64xf32>
  return
}
