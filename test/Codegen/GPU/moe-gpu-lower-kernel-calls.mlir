// RUN: moe-opt %s -split-input-file --pass-pipeline='builtin.module(moe-gpu-form-kernel-calls, one-shot-bufferize{bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map}, buffer-deallocation-pipeline, moe-gpu-lower-kernel-calls)' | FileCheck %s
// From moe ops on tensors through the stages of moe-gpu-pipeline before this pass (kernel
// calls, one-shot bufferization, deallocation): the launches and the kernel library built.

// Prefill (dynamic T): tensor-core GEMM, one stream, buffers freed before the wait, which
// waits on the last op's token (a wait on the entry token would be canonicalized away).
// CHECK-LABEL: func.func @prefill
// CHECK: %[[S:.*]] = gpu.wait async
// CHECK: gpu.alloc async [%[[S]]]
// CHECK: gpu.launch_func async [%[[S]]] @moec_kernels::@rms_norm
// CHECK: gpu.launch_func async [%[[S]]] @moec_kernels::@gemm_mma
// CHECK: gpu.launch_func async [%[[S]]] @moec_kernels::@copy
// CHECK: gpu.dealloc async [%[[S]]]
// CHECK: %[[LAST:.*]] = gpu.dealloc async [%[[S]]] %{{.*}} : memref<1xi32>
// CHECK-NEXT: gpu.wait [%[[LAST]]]
// CHECK-NEXT: return
// The library is built for the weights' element type (bf16 here) with Tiles.h's geometry:
// 16-byte aligned shared memory, padded 40-element bf16 rows for ldmatrix, four stage
// buffers of 64 rows per operand of the plain GEMM; bf16 weights are staged with 16-byte
// cp.async copies (zero-filled by a dynamic source size), one group per K tile, three tiles
// ahead: the prologue commits tiles 0-2, each iteration waits until two groups are pending
// (tile t landed), passes the barrier and commits tile t + 3; all are retired after the loop. The
// GEMV stages the activation row in a 2048-float buffer.
// CHECK: gpu.module @moec_kernels
// CHECK: gpu.func @rms_norm({{.*}}, %{{.*}}: memref<?xbf16, strided<[1], offset: ?>>,
// CHECK-SAME: workgroup(%{{.*}} : memref<8xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64})
// CHECK-SAME: kernel attributes {known_block_size = array<i32: 256, 1, 1>}
// CHECK: gpu.func @gemv({{.*}}) workgroup(%{{.*}} : memref<2048xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %{{.*}} : memref<2xi32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64})
// CHECK-SAME: known_block_size = array<i32: 256, 1, 1>, nvvm.maxnreg = 96 : i32
// CHECK: gpu.func @gemm_mma({{.*}}, %{{.*}}: memref<?x?x?xbf16, strided<[?, ?, 1], offset: ?>>,
// CHECK-SAME: workgroup(%[[SA:.*]] : memref<256x40xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[SB:.*]] : memref<256x40xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64})
// CHECK-SAME: known_block_size = array<i32: 128, 1, 1>, nvvm.maxnreg = 168 : i32
// CHECK: %[[C1:.*]] = nvgpu.device_async_copy %arg1[{{.*}}], %[[SB]][{{.*}}], 8, %{{.*}} {bypassL1}
// CHECK: %[[C2:.*]] = nvgpu.device_async_copy %arg1[{{.*}}], %[[SB]][{{.*}}], 8, %{{.*}} {bypassL1}
// CHECK: nvgpu.device_async_create_group %[[C1]], %[[C2]]
// CHECK: nvgpu.device_async_create_group
// CHECK: vector.store {{.*}}, %[[SA]]
// CHECK: scf.for
// CHECK: nvvm.cp.async.wait.group 2
// CHECK-NEXT: gpu.barrier
// CHECK: nvgpu.device_async_create_group
// CHECK: nvgpu.ldmatrix %[[SA]]
// CHECK: nvgpu.ldmatrix %[[SB]]
// CHECK: nvvm.mma.sync
// CHECK-SAME: shape = #nvvm.shape<m = 16, n = 8, k = 16>
// CHECK: scf.yield
// CHECK: nvvm.cp.async.wait.group 0
func.func @prefill(%w: memref<4096xi8>, %xin: memref<64x64xf32>, %n: index, %out: memref<64x32xf32>) {
  %c0 = arith.constant 0 : index
  %c256 = arith.constant 256 : index
  %vn = memref.view %w[%c0][] : memref<4096xi8> to memref<64xbf16>
  %vw = memref.view %w[%c256][] : memref<4096xi8> to memref<32x64xbf16>
  %nw = bufferization.to_tensor %vn restrict : memref<64xbf16> to tensor<64xbf16>
  %lw = bufferization.to_tensor %vw restrict : memref<32x64xbf16> to tensor<32x64xbf16>
  %all = bufferization.to_tensor %xin restrict : memref<64x64xf32> to tensor<64x64xf32>
  %x = tensor.extract_slice %all[0, 0] [%n, 64] [1, 1] : tensor<64x64xf32> to tensor<?x64xf32>
  %y = moe.rms_norm %x, %nw {epsilon = 1.0e-05 : f64} : (tensor<?x64xf32>, tensor<64xbf16>) -> tensor<?x64xf32>
  %z = moe.linear %y, %lw : (tensor<?x64xf32>, tensor<32x64xbf16>) -> tensor<?x32xf32>
  %o = bufferization.to_tensor %out restrict writable : memref<64x32xf32> to tensor<64x32xf32>
  %r = tensor.insert_slice %z into %o[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<64x32xf32>
  bufferization.materialize_in_destination %r in restrict writable %out : (tensor<64x32xf32>, memref<64x32xf32>) -> ()
  return
}

// -----

// Decode (T = 1): the MoE block in the middle end's fused routed form, one kernel per op
// (router -> GEMV, top_k_gating -> top_k, dispatch -> dispatch, grouped_swiglu -> SwiGLU
// GEMV, grouped_matmul_combine -> GEMV + combine); routing never leaves the GPU. The combine
// kernel reads the inverse permutation that the dispatch kernel wrote beside the permutation.
// Every temporary is static: one arena (nine buffers at 256-byte offsets and the GEMVs'
// placeholder), one gpu.alloc per call.
// CHECK-LABEL: func.func @decode
// CHECK: %[[ARENA:.*]], %{{.*}} = gpu.alloc async [%{{.*}}] () : memref<2816xi8>
// CHECK: memref.view %[[ARENA]][%{{.*}}][] : memref<2816xi8> to memref<1x4xf32>
// CHECK: @moec_kernels::@gemv
// CHECK: memref.view %[[ARENA]][%{{.*}}][] : memref<2816xi8> to memref<1x2xf32>
// CHECK: memref.view %[[ARENA]][%{{.*}}][] : memref<2816xi8> to memref<1x2xi32>
// CHECK: @moec_kernels::@top_k
// CHECK: memref.view %[[ARENA]][%{{.*}}][] : memref<2816xi8> to memref<2xi32>
// CHECK: memref.view %[[ARENA]][%{{.*}}][] : memref<2816xi8> to memref<5xi32>
// CHECK: %[[INV:.*]] = memref.view %[[ARENA]][%{{.*}}][] : memref<2816xi8> to memref<2xi32>
// CHECK-NOT: gpu.alloc
// CHECK: @moec_kernels::@dispatch
// CHECK: @moec_kernels::@gemv_swiglu
// CHECK: @moec_kernels::@gemv
// CHECK: %[[INVARG:[^ ]*]] = memref.cast %[[INV]]
// CHECK: @moec_kernels::@combine
// CHECK-SAME: %[[INVARG]]
// CHECK: %[[LAST:.*]] = gpu.dealloc async [%{{.*}}] %[[ARENA]] : memref<2816xi8>
// CHECK-NEXT: gpu.wait [%[[LAST]]]
// CHECK-NOT: moe.
// Top-k's order (as on the CPU): a logit v displaces the best so far only if v is a number
// and above it or the best is NaN (ord, ugt), so NaN ranks lowest and ties keep the lower id.
// CHECK-LABEL: gpu.func @top_k
// CHECK:         %[[V:.*]] = memref.load %arg0
// CHECK:         %[[NOBEST:.*]] = arith.cmpi eq, %[[BI:.*]], %c-1_i32 : i32
// CHECK-NEXT:    %[[NUM:.*]] = arith.cmpf ord, %[[V]], %[[V]] : f32
// CHECK-NEXT:    %[[UGT:.*]] = arith.cmpf ugt, %[[V]], %[[BV:.*]] : f32
// CHECK-NEXT:    %[[ABOVE:.*]] = arith.andi %[[NUM]], %[[UGT]] : i1
// CHECK-NEXT:    arith.ori %[[NOBEST]], %[[ABOVE]] : i1
// Dispatch counts an id outside [0, E) as E-1.
// CHECK-LABEL: gpu.func @dispatch
// CHECK:         %[[E32:.*]] = arith.index_cast %arg5 : index to i32
// CHECK-NEXT:    %[[LAST:.*]] = arith.subi %[[E32]], %{{.*}} : i32
// CHECK:         %[[ID:.*]] = memref.load %arg0
// CHECK-NEXT:    arith.minui %[[ID]], %[[LAST]] : i32
// CHECK:         %[[ID2:.*]] = memref.load %arg0
// CHECK-NEXT:    arith.minui %[[ID2]], %[[LAST]] : i32
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
  %logits = moe.router %x, %gt : (tensor<1x64xf32>, tensor<4x64xbf16>) -> tensor<1x4xf32>
  %weights, %ids = moe.top_k_gating %logits {k = 2 : i64} : (tensor<1x4xf32>) -> (tensor<1x2xf32>, tensor<1x2xi32>)
  %perm, %offsets = moe.dispatch %ids {num_experts = 4 : i64} : (tensor<1x2xi32>) -> (tensor<2xi32>, tensor<5xi32>)
  %h = moe.grouped_swiglu %x, %perm, %offsets, %w1t, %w3t {k = 2 : i64}
      : (tensor<1x64xf32>, tensor<2xi32>, tensor<5xi32>, tensor<4x32x64xbf16>, tensor<4x32x64xbf16>) -> tensor<2x32xf32>
  %y = moe.grouped_matmul_combine %h, %w2t, %offsets, %perm, %weights
      : (tensor<2x32xf32>, tensor<4x64x32xbf16>, tensor<5xi32>, tensor<2xi32>, tensor<1x2xf32>) -> tensor<1x64xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<1x64xf32>, memref<1x64xf32>) -> ()
  return
}

// -----

// The batched step's own ops (moec_step): rope at per-row positions, the paged KV write in
// place into the caller's pool (no copy back for its materialize), and paged attention over
// the rows' block tables: one block per row and KV head (grid x = the row count), reading the
// written pool; only the attention's result is copied out.
// CHECK-LABEL: func.func @step
// CHECK-SAME:    %[[POOL:arg2]]: memref<4x16x2x16xf32>, %[[TBL:arg3]]: memref<8x4xi32>, %[[POS:arg4]]: memref<8xi32>
// CHECK:         %[[P1:.*]] = memref.cast %[[POS]]
// CHECK:         @moec_kernels::@rope_at {{.*}} args(%{{.*}}, %[[P1]] : memref<?xi32, strided<[1], offset: ?>>
// CHECK:         @moec_kernels::@rope_at
// CHECK:         %[[PL:.*]] = memref.cast %[[POOL]]
// CHECK-NEXT:    %[[T:.*]] = memref.cast %[[TBL]]
// CHECK-NEXT:    %[[P2:.*]] = memref.cast %[[POS]]
// CHECK:         @moec_kernels::@paged_kv_write {{.*}} args(%{{.*}}, %[[PL]] : {{.*}}, %[[T]] : {{.*}}, %[[P2]] :
// CHECK:         %[[K:.*]] = memref.cast %[[POOL]]
// CHECK-NEXT:    %[[V:.*]] = memref.cast %[[POOL]]
// CHECK:         @moec_kernels::@paged_attention blocks in (%c8{{[_0-9]*}}, %c2{{[_0-9]*}}, %c1{{[_0-9]*}}) {{.*}} args(%{{.*}}, %[[K]] : {{.*}}, %[[V]] :
// CHECK:         @moec_kernels::@copy
// CHECK-NOT:     gpu.launch_func
// CHECK:         return
func.func @step(%qm: memref<8x4x16xf32>, %km: memref<8x2x16xf32>, %pool: memref<4x16x2x16xf32>, %tm: memref<8x4xi32>, %pm: memref<8xi32>, %out: memref<8x4x16xf32>) {
  %q0 = bufferization.to_tensor %qm restrict : memref<8x4x16xf32> to tensor<8x4x16xf32>
  %k0 = bufferization.to_tensor %km restrict : memref<8x2x16xf32> to tensor<8x2x16xf32>
  %kp = bufferization.to_tensor %pool restrict writable : memref<4x16x2x16xf32> to tensor<4x16x2x16xf32>
  %tbl = bufferization.to_tensor %tm restrict : memref<8x4xi32> to tensor<8x4xi32>
  %pos = bufferization.to_tensor %pm restrict : memref<8xi32> to tensor<8xi32>
  %q = moe.rope_at %q0, %pos {theta = 1.0e+06 : f64} : (tensor<8x4x16xf32>, tensor<8xi32>) -> tensor<8x4x16xf32>
  %k = moe.rope_at %k0, %pos {theta = 1.0e+06 : f64} : (tensor<8x2x16xf32>, tensor<8xi32>) -> tensor<8x2x16xf32>
  %kp2 = moe.paged_kv_write %k, %kp, %tbl, %pos : (tensor<8x2x16xf32>, tensor<4x16x2x16xf32>, tensor<8x4xi32>, tensor<8xi32>) -> tensor<4x16x2x16xf32>
  %o = moe.paged_attention %q, %kp2, %kp2, %tbl, %pos {scale = 2.5e-01 : f64} : (tensor<8x4x16xf32>, tensor<4x16x2x16xf32>, tensor<4x16x2x16xf32>, tensor<8x4xi32>, tensor<8xi32>) -> tensor<8x4x16xf32>
  bufferization.materialize_in_destination %o in restrict writable %out : (tensor<8x4x16xf32>, memref<8x4x16xf32>) -> ()
  bufferization.materialize_in_destination %kp2 in restrict writable %pool : (tensor<4x16x2x16xf32>, memref<4x16x2x16xf32>) -> ()
  return
}
