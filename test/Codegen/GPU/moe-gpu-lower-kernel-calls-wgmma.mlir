// RUN: moe-opt %s -split-input-file --pass-pipeline='builtin.module(moe-gpu-form-kernel-calls, one-shot-bufferize{bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map}, buffer-deallocation-pipeline, moe-gpu-lower-kernel-calls{wgmma=true})' | FileCheck %s
// From moe ops on tensors through the stages of moe-gpu-pipeline before this pass (kernel
// calls, one-shot bufferization, deallocation): the launches and the kernel library built.

// wgmma (the chip is sm_90a): the prefill GEMM launches the warpgroup GEMM, grid
// (ceil(N / 128), ceil(M / 64) + G) of 128 threads, with gemm_mma's arguments. The library
// holds both; gemm_wgmma stages A (2 x 256 16-byte slots) and B (2 x 512) in the core-matrix
// layout, bf16 weights by cp.async, fences the generic proxy, then wgmma.fence, one
// m64n128k16 mma_async per k16 step from two i64 descriptors, commit and wait 0.
// CHECK-LABEL: func.func @prefill
// CHECK: %[[C128:.*]] = arith.constant 128 : index
// CHECK: %[[NT:.*]] = arith.ceildivui %{{.*}}, %[[C128]] : index
// CHECK: %[[C64:.*]] = arith.constant 64 : index
// CHECK: %[[RT:.*]] = arith.ceildivui %{{.*}}, %[[C64]] : index
// CHECK: %[[GY:.*]] = arith.addi %[[RT]], %{{.*}} : index
// CHECK: %[[T:.*]] = arith.constant 128 : index
// CHECK: gpu.launch_func async [%{{.*}}] @moec_kernels::@gemm_wgmma blocks in (%[[NT]], %[[GY]], %{{.*}}) threads in (%[[T]],
// CHECK: gpu.module @moec_kernels
// CHECK: gpu.func @gemm_mma(
// CHECK: gpu.func @gemm_wgmma({{.*}}, %{{.*}}: memref<?x?x?xbf16, strided<[?, ?, 1], offset: ?>>,
// CHECK-SAME: workgroup(%[[SA:.*]] : memref<512x8xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[SB:.*]] : memref<1024x8xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64})
// CHECK-SAME: known_block_size = array<i32: 128, 1, 1>
// CHECK: memref.extract_aligned_pointer_as_index %[[SA]]
// CHECK: memref.extract_aligned_pointer_as_index %[[SB]]
// CHECK: nvgpu.device_async_copy %arg1[{{.*}}], %[[SB]][{{.*}}], 8, %{{.*}} {bypassL1}
// CHECK: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK: scf.for
// CHECK: gpu.barrier
// CHECK: nvvm.wgmma.fence.aligned
// CHECK: nvvm.wgmma.mma_async %{{.*}}, %{{.*}}, %{{.*}}, <m = 64, n = 128, k = 16>, D[<f32>, <one>], A[<bf16>, <one>, <row>], B[<bf16>, <one>, <col>]
// CHECK: nvvm.wgmma.mma_async
// CHECK: nvvm.wgmma.commit.group.sync.aligned
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: gpu.func @gemm_wgmma_swiglu(
func.func @prefill(%w: memref<4096xi8>, %xin: memref<64x64xf32>, %n: index, %out: memref<64x32xf32>) {
  %c0 = arith.constant 0 : index
  %vw = memref.view %w[%c0][] : memref<4096xi8> to memref<32x64xbf16>
  %lw = bufferization.to_tensor %vw restrict : memref<32x64xbf16> to tensor<32x64xbf16>
  %all = bufferization.to_tensor %xin restrict : memref<64x64xf32> to tensor<64x64xf32>
  %x = tensor.extract_slice %all[0, 0] [%n, 64] [1, 1] : tensor<64x64xf32> to tensor<?x64xf32>
  %z = moe.linear %x, %lw : (tensor<?x64xf32>, tensor<32x64xbf16>) -> tensor<?x32xf32>
  %o = bufferization.to_tensor %out restrict writable : memref<64x32xf32> to tensor<64x32xf32>
  %r = tensor.insert_slice %z into %o[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<64x32xf32>
  bufferization.materialize_in_destination %r in restrict writable %out : (tensor<64x32xf32>, memref<64x32xf32>) -> ()
  return
}

// -----

// K = 60 is no multiple of 8 (the warpgroup GEMM stages whole 16-byte chunks only): mma.sync.
// CHECK-LABEL: func.func @prefill_odd_k
// CHECK-NOT: @gemm_wgmma
// CHECK: gpu.launch_func async [%{{.*}}] @moec_kernels::@gemm_mma
// CHECK-NOT: launch_func {{.*}}@gemm_wgmma
func.func @prefill_odd_k(%w: memref<4096xi8>, %xin: memref<64x60xf32>, %n: index, %out: memref<64x32xf32>) {
  %c0 = arith.constant 0 : index
  %vw = memref.view %w[%c0][] : memref<4096xi8> to memref<32x60xbf16>
  %lw = bufferization.to_tensor %vw restrict : memref<32x60xbf16> to tensor<32x60xbf16>
  %all = bufferization.to_tensor %xin restrict : memref<64x60xf32> to tensor<64x60xf32>
  %x = tensor.extract_slice %all[0, 0] [%n, 60] [1, 1] : tensor<64x60xf32> to tensor<?x60xf32>
  %z = moe.linear %x, %lw : (tensor<?x60xf32>, tensor<32x60xbf16>) -> tensor<?x32xf32>
  %o = bufferization.to_tensor %out restrict writable : memref<64x32xf32> to tensor<64x32xf32>
  %r = tensor.insert_slice %z into %o[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<64x32xf32>
  bufferization.materialize_in_destination %r in restrict writable %out : (tensor<64x32xf32>, memref<64x32xf32>) -> ()
  return
}
