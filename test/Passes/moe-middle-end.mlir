// The middle end is one pass list that both back ends run first: the CPU pipeline and the GPU
// pipeline list moe-quantize-weights, moe-decompose-sparse-block and moe-fuse-expert-gemms
// before their own lowering, and both hand their lowering the same IR (fused routed ops, the
// GPU's kernel boundaries).
// RUN: moe-opt %s --moe-middle-end | FileCheck %s
// RUN: moe-opt %s --moe-cpu-pipeline --dump-pass-pipeline -o /dev/null 2>&1 | FileCheck %s --check-prefix=CPU
// RUN: moe-opt %s --moe-gpu-pipeline=stop-before-binary --dump-pass-pipeline -o /dev/null 2>&1 | FileCheck %s --check-prefix=GPU
// RUN: moe-opt %s --moe-cpu-pipeline --mlir-print-ir-after=moe-fuse-expert-gemms -o /dev/null 2> %t.cpu
// RUN: moe-opt %s --moe-gpu-pipeline=stop-before-binary --mlir-print-ir-after=moe-fuse-expert-gemms -o /dev/null 2> %t.gpu
// RUN: diff %t.cpu %t.gpu
// RUN: FileCheck %s --check-prefix=DUMP < %t.gpu

// CPU-LABEL: Pass Manager with
// CPU:         builtin.module(
// CPU-NEXT:      moe-quantize-weights
// CPU-NEXT:      moe-decompose-sparse-block,
// CPU-NEXT:      moe-fuse-expert-gemms,
// CPU-NEXT:      moe-lower-to-linalg,
// CPU:           one-shot-bufferize

// GPU-LABEL: Pass Manager with
// GPU:         builtin.module(
// GPU-NEXT:      moe-quantize-weights
// GPU-NEXT:      moe-decompose-sparse-block,
// GPU-NEXT:      moe-fuse-expert-gemms,
// GPU-NEXT:      moe-gpu-form-kernel-calls
// GPU:           one-shot-bufferize
// GPU:           moe-gpu-lower-kernel-calls

// DUMP-LABEL: IR Dump After MoeFuseExpertGemms (moe-fuse-expert-gemms)
// DUMP:         func.func @decode

// CHECK-LABEL: func.func @decode
// CHECK:         %[[X:.*]] = bufferization.to_tensor %{{.*}} : memref<1x64xf32> to tensor<1x64xf32>
// CHECK:         %[[L:.*]] = moe.router %[[X]], %{{.*}} : (tensor<1x64xf32>, tensor<4x64xbf16>) -> tensor<1x4xf32>
// CHECK:         %[[W:.*]], %[[IDS:.*]] = moe.top_k_gating %[[L]] {k = 2 : i64}
// CHECK:         %[[P:.*]], %[[O:.*]] = moe.dispatch %[[IDS]] {num_experts = 4 : i64}
// CHECK:         %[[H:.*]] = moe.grouped_swiglu %[[X]], %[[P]], %[[O]], %{{.*}}, %{{.*}} {k = 2 : i64}
// CHECK:         moe.grouped_matmul_combine %[[H]], %{{.*}}, %[[O]], %[[P]], %[[W]]
// CHECK-NOT:     moe.sparse_block
func.func @decode(%w: memref<65536xi8>, %xin: memref<1x64xf32>, %out: memref<1x64xf32>) {
  %c0 = arith.constant 0 : index
  %c1024 = arith.constant 1024 : index
  %c16384 = arith.constant 16384 : index
  %c32768 = arith.constant 32768 : index
  %g = memref.view %w[%c0][] : memref<65536xi8> to memref<4x64xbf16>
  %w1 = memref.view %w[%c1024][] : memref<65536xi8> to memref<4x32x64xbf16>
  %w3 = memref.view %w[%c16384][] : memref<65536xi8> to memref<4x32x64xbf16>
  %w2 = memref.view %w[%c32768][] : memref<65536xi8> to memref<4x64x32xbf16>
  %gt = bufferization.to_tensor %g restrict : memref<4x64xbf16> to tensor<4x64xbf16>
  %w1t = bufferization.to_tensor %w1 restrict : memref<4x32x64xbf16> to tensor<4x32x64xbf16>
  %w3t = bufferization.to_tensor %w3 restrict : memref<4x32x64xbf16> to tensor<4x32x64xbf16>
  %w2t = bufferization.to_tensor %w2 restrict : memref<4x64x32xbf16> to tensor<4x64x32xbf16>
  %x = bufferization.to_tensor %xin restrict : memref<1x64xf32> to tensor<1x64xf32>
  %y = moe.sparse_block %x, %gt, %w1t, %w3t, %w2t {k = 2 : i64} : (tensor<1x64xf32>, tensor<4x64xbf16>, tensor<4x32x64xbf16>, tensor<4x32x64xbf16>, tensor<4x64x32xbf16>) -> tensor<1x64xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<1x64xf32>, memref<1x64xf32>) -> ()
  return
}
