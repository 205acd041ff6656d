// RUN: moe-opt %s --moe-cpu-pipeline="cpu=x86-64-v4 vector-width=16" | FileCheck %s
// RUN: moe-opt %s --moe-cpu-pipeline="cpu=x86-64-v4 vector-width=16" | mlir-translate --mlir-to-llvmir | FileCheck %s --check-prefix=LLVMIR
// RUN: moe-opt %s --moe-cpu-pipeline="openmp=false vector-width=8" | FileCheck %s --check-prefix=SERIAL

// A one-layer model in the shape mixtral-compile builds: ABI entry points over the weight
// arena, a dense projection and a sparse MoE block.

// Entry points keep the bare-pointer calling convention of moec/abi.h.
// CHECK-LABEL: llvm.func @moec_prefill
// CHECK-SAME:    (%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: !llvm.ptr)
// Matmul kernels: FMAs on 16 f32 lanes inside OpenMP worksharing loops.
// CHECK:         omp.parallel
// CHECK:           omp.wsloop
// CHECK:             llvm.intr.fmuladd(%{{.*}}, %{{.*}}, %{{.*}}) : (vector<16xf32>, vector<16xf32>, vector<16xf32>) -> vector<16xf32>
// The dot-product kernel's horizontal add: a halving tree (upper 8 lanes onto the lower 8, ...).
// CHECK:             llvm.shufflevector %[[ACC:.*]], %[[ACC]] [8, 9, 10, 11, 12, 13, 14, 15] : vector<16xf32>
// CHECK-LABEL: llvm.func @moec_decode
// CHECK-SAME:    (%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr)
// CHECK-NOT:     func.func
// CHECK-NOT:     moe.

// LLVMIR:      define void @moec_prefill(ptr %{{.*}}, ptr %{{.*}}, i64 %{{.*}}, ptr %{{.*}})
// LLVMIR:        call void {{.*}}@__kmpc_fork_call
// LLVMIR:      define void @moec_decode(ptr %{{.*}}, ptr %{{.*}}, ptr %{{.*}})
// LLVMIR:      call <16 x float> @llvm.fmuladd.v16f32

// SERIAL-LABEL: llvm.func @moec_prefill
// SERIAL-NOT:     omp.
// SERIAL:         llvm.intr.fmuladd(%{{.*}}, %{{.*}}, %{{.*}}) : (vector<8xf32>, vector<8xf32>, vector<8xf32>) -> vector<8xf32>

module {
  func.func @moec_prefill(%weights: memref<20480xi8>, %tokens: memref<16x32xf32>, %n: index,
                          %out: memref<16x32xf32>) {
    %c0 = arith.constant 0 : index
    %c2048 = arith.constant 2048 : index
    %c2304 = arith.constant 2304 : index
    %c8448 = arith.constant 8448 : index
    %c14592 = arith.constant 14592 : index
    %xt = bufferization.to_tensor %tokens restrict : memref<16x32xf32> to tensor<16x32xf32>
    %x = tensor.extract_slice %xt[0, 0] [%n, 32] [1, 1] : tensor<16x32xf32> to tensor<?x32xf32>
    %wv = memref.view %weights[%c0][] : memref<20480xi8> to memref<32x32xbf16>
    %w = bufferization.to_tensor %wv restrict : memref<32x32xbf16> to tensor<32x32xbf16>
    %gv = memref.view %weights[%c2048][] : memref<20480xi8> to memref<4x32xbf16>
    %g = bufferization.to_tensor %gv restrict : memref<4x32xbf16> to tensor<4x32xbf16>
    %w1v = memref.view %weights[%c2304][] : memref<20480xi8> to memref<4x24x32xbf16>
    %w1 = bufferization.to_tensor %w1v restrict : memref<4x24x32xbf16> to tensor<4x24x32xbf16>
    %w3v = memref.view %weights[%c8448][] : memref<20480xi8> to memref<4x24x32xbf16>
    %w3 = bufferization.to_tensor %w3v restrict : memref<4x24x32xbf16> to tensor<4x24x32xbf16>
    %w2v = memref.view %weights[%c14592][] : memref<20480xi8> to memref<4x32x24xbf16>
    %w2 = bufferization.to_tensor %w2v restrict : memref<4x32x24xbf16> to tensor<4x32x24xbf16>
    %h = moe.linear %x, %w : (tensor<?x32xf32>, tensor<32x32xbf16>) -> tensor<?x32xf32>
    %y = moe.sparse_block %h, %g, %w1, %w3, %w2 {k = 2 : i64}
        : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x24x32xbf16>, tensor<4x24x32xbf16>,
           tensor<4x32x24xbf16>) -> tensor<?x32xf32>
    %ot = bufferization.to_tensor %out restrict writable : memref<16x32xf32> to tensor<16x32xf32>
    %o = tensor.insert_slice %y into %ot[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<16x32xf32>
    bufferization.materialize_in_destination %o in restrict writable %out : (tensor<16x32xf32>, memref<16x32xf32>) -> ()
    return
  }

  func.func @moec_decode(%weights: memref<20480xi8>, %token: memref<1x32xf32>,
                         %out: memref<1x32xf32>) {
    %c0 = arith.constant 0 : index
    %xt = bufferization.to_tensor %token restrict : memref<1x32xf32> to tensor<1x32xf32>
    %wv = memref.view %weights[%c0][] : memref<20480xi8> to memref<32x32xbf16>
    %w = bufferization.to_tensor %wv restrict : memref<32x32xbf16> to tensor<32x32xbf16>
    %h = moe.linear %xt, %w : (tensor<1x32xf32>, tensor<32x32xbf16>) -> tensor<1x32xf32>
    bufferization.materialize_in_destination %h in restrict writable %out : (tensor<1x32xf32>, memref<1x32xf32>) -> ()
    return
  }
}
