// RUN: moe-opt %s --moe-gpu-expand-kernel-memrefs -split-input-file -verify-diagnostics | FileCheck %s

// A dynamic strided view is passed as its base pointer, offset, sizes and outer stride; a
// static memref as its base pointer alone; scalars and workgroup buffers are untouched. The
// kernel rebuilds both views at entry, and the launch passes them in the same order.
// CHECK-LABEL: func.func @host
// CHECK-SAME: (%[[X:.*]]: memref<?x?xf32, strided<[?, 1], offset: ?>>, %[[W:.*]]: memref<8x4xbf16>, %[[N:.*]]: index)
// CHECK: %[[XB:.*]], %[[XO:.*]], %[[XS:.*]]:2, %[[XT:.*]]:2 = memref.extract_strided_metadata %[[X]]
// CHECK: %[[WB:.*]], %{{.*}}, %{{.*}}:2, %{{.*}}:2 = memref.extract_strided_metadata %[[W]]
// CHECK: gpu.launch_func @k::@f
// CHECK-SAME: args(%[[XB]] : memref<f32>, %[[XO]] : index, %[[XS]]#0 : index, %[[XS]]#1 : index, %[[XT]]#0 : index, %[[N]] : index, %[[WB]] : memref<bf16>)
// CHECK: gpu.func @f(%[[B:.*]]: memref<f32>, %[[O:.*]]: index, %[[S0:.*]]: index, %[[S1:.*]]: index, %[[T0:.*]]: index, %[[K:.*]]: index, %[[BW:.*]]: memref<bf16>)
// CHECK-SAME: workgroup(%[[SH:.*]] : memref<4xf32, 3>) kernel
// CHECK: %[[V:.*]] = memref.reinterpret_cast %[[B]] to offset: [%[[O]]], sizes: [%[[S0]], %[[S1]]], strides: [%[[T0]], 1] : memref<f32> to memref<?x?xf32, strided<[?, 1], offset: ?>>
// CHECK: %[[VW:.*]] = memref.reinterpret_cast %[[BW]] to offset: [0], sizes: [8, 4], strides: [4, 1] : memref<bf16> to memref<8x4xbf16>
// CHECK: memref.load %[[V]][%{{.*}}, %[[K]]]
// CHECK: memref.store %{{.*}}, %[[SH]]
// CHECK: memref.load %[[VW]]
module attributes {gpu.container_module} {
  func.func @host(%x: memref<?x?xf32, strided<[?, 1], offset: ?>>, %w: memref<8x4xbf16>, %n: index) {
    %c1 = arith.constant 1 : index
    gpu.launch_func @k::@f blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
        args(%x : memref<?x?xf32, strided<[?, 1], offset: ?>>, %n : index, %w : memref<8x4xbf16>)
    return
  }
  gpu.module @k {
    gpu.func @f(%x: memref<?x?xf32, strided<[?, 1], offset: ?>>, %n: index, %w: memref<8x4xbf16>)
        workgroup(%s: memref<4xf32, 3>) kernel {
      %c0 = arith.constant 0 : index
      %v = memref.load %x[%c0, %n] : memref<?x?xf32, strided<[?, 1], offset: ?>>
      memref.store %v, %s[%c0] : memref<4xf32, 3>
      %b = memref.load %w[%c0, %c0] : memref<8x4xbf16>
      gpu.return
    }
  }
}

// -----

// A layout that is not strided cannot be described by a pointer and strides.
module attributes {gpu.container_module} {
  func.func @host(%x: memref<4xf32, affine_map<(d0) -> (d0 mod 2)>>) {
    %c1 = arith.constant 1 : index
    // expected-error @below {{kernel operand of type 'memref<4xf32, affine_map<(d0) -> (d0 mod 2)>>' has no strided layout, so it cannot be passed as a pointer and its metadata.}}
    gpu.launch_func @k::@f blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
        args(%x : memref<4xf32, affine_map<(d0) -> (d0 mod 2)>>)
    return
  }
  gpu.module @k {
    gpu.func @f(%x: memref<4xf32, affine_map<(d0) -> (d0 mod 2)>>) kernel {
      gpu.return
    }
  }
}
