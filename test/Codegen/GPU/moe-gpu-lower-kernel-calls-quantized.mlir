// RUN: moe-opt %s -split-input-file --pass-pipeline='builtin.module(moe-gpu-form-kernel-calls, one-shot-bufferize{bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map}, buffer-deallocation-pipeline, moe-gpu-lower-kernel-calls)' -verify-diagnostics | FileCheck %s
// From moe ops on tensors through the stages of moe-gpu-pipeline before this pass (kernel
// calls, one-shot bufferization, deallocation): the launches and the kernel library built.
// Quantized weights (#moe.quant, after moe-quantize-weights) at the launch stage: each matmul
// launches the kernel variant of its format with the data and the scales (two buffers; no
// dequantised copy of a weight anywhere), and the library holds that variant beside the float
// kernels the model's other weights (router, lm_head) use. A weight still marked for
// quantization (moe-quantize-weights did not run) is refused, not read as floats.

// Decode: q8 projection -> gemv_q8 (data i8, scales f16). A lane step is one whole group:
// two 16-byte loads of codes and the group's scale loaded once; 4 codes at a time become
// f32 without a conversion (sign bit flipped, byte or'ed into the mantissa of 2^23, minus
// 2^23 + 128), sum codes * x over the group, then times the scale once. The activations come
// from the padded shared layout (2048 / 32 segments of 32 + 4 floats).
// CHECK-LABEL: func.func @q8_decode
// CHECK: %[[D:.*]] = memref.view %{{.*}} to memref<16x64xi8>
// CHECK: %[[S:.*]] = memref.view %{{.*}} to memref<16x2xf16>
// CHECK: %[[DG:.*]] = memref.expand_shape %[[D]] {{.*}} into memref<1x16x64xi8>
// CHECK: %[[DA:.*]] = memref.cast %[[DG]]
// CHECK: %[[SG:.*]] = memref.expand_shape %[[S]] {{.*}} into memref<1x16x2xf16>
// CHECK: %[[SA:.*]] = memref.cast %[[SG]]
// CHECK: gpu.launch_func async [%{{.*}}] @moec_kernels::@gemv_q8
// CHECK-SAME: args(%{{.*}} : memref<?x?xf32, strided<[?, 1], offset: ?>>, %[[DA]] : memref<?x?x?xi8, strided<[?, ?, 1], offset: ?>>, %[[SA]] : memref<?x?x?xf16, strided<[?, ?, 1], offset: ?>>
// CHECK: gpu.module @moec_kernels
// CHECK: gpu.func @gemv(
// CHECK: gpu.func @gemv_swiglu(
// CHECK-LABEL: gpu.func @gemv_q8(
// CHECK-SAME: %arg1: memref<?x?x?xi8, strided<[?, ?, 1], offset: ?>>, %arg2: memref<?x?x?xf16, strided<[?, ?, 1], offset: ?>>
// CHECK: %[[Q0:.*]] = vector.load %arg1[{{.*}}] {alignment = 16 : i64} : memref<?x?x?xi8, strided<[?, ?, 1], offset: ?>>, vector<16xi8>
// CHECK: %[[W0:.*]] = vector.bitcast %[[Q0]] : vector<16xi8> to vector<4xi32>
// CHECK: vector.load %arg1[{{.*}}] {alignment = 16 : i64} : memref<?x?x?xi8, strided<[?, ?, 1], offset: ?>>, vector<16xi8>
// CHECK: %[[SC:.*]] = memref.load %arg2
// CHECK: %[[SCF:.*]] = arith.extf %[[SC]] : f16 to f32
// CHECK: %[[X:.*]] = vector.load %{{.*}} : memref<2304xf32, #gpu.address_space<workgroup>>, vector<4xf32>
// CHECK: %[[WD:.*]] = vector.extract %[[W0]][0] : i32 from vector<4xi32>
// CHECK: arith.xori %[[WD]], %c-2139062144_i32 : i32
// CHECK: arith.shrui
// CHECK: arith.andi
// CHECK: %[[M:.*]] = arith.ori
// CHECK: %[[F:.*]] = arith.bitcast %[[M]] : vector<4xi32> to vector<4xf32>
// CHECK: %[[CODES:.*]] = arith.subf %[[F]], %{{.*}} : vector<4xf32>
// CHECK: vector.fma %[[X]], %[[CODES]], %{{.*}} : vector<4xf32>
// CHECK: %[[SCV:.*]] = vector.broadcast %[[SCF]] : f32 to vector<4xf32>
// CHECK: vector.fma %{{.*}}, %[[SCV]], %{{.*}} : vector<4xf32>
// CHECK-NOT: arith.sitofp {{.*}} : vector<16xi8>
// CHECK-LABEL: gpu.func @gemv_swiglu_q8(
// CHECK: gpu.func @gemm_mma(
// CHECK: gpu.func @gemm_mma_swiglu(
// CHECK-LABEL: gpu.func @gemm_mma_q8(
// CHECK-LABEL: gpu.func @gemm_mma_swiglu_q8(
// CHECK-NOT: gpu.func @{{.*}}_q4
func.func @q8_decode(%arena: memref<8192xi8>, %xin: memref<1x64xf32>, %out: memref<1x16xf32>) {
  %c0 = arith.constant 0 : index
  %c1024 = arith.constant 1024 : index
  %dv = memref.view %arena[%c0][] : memref<8192xi8> to memref<16x64xi8>
  %sv = memref.view %arena[%c1024][] : memref<8192xi8> to memref<16x2xf16>
  %d = bufferization.to_tensor %dv restrict : memref<16x64xi8> to tensor<16x64xi8>
  %s = bufferization.to_tensor %sv restrict : memref<16x2xf16> to tensor<16x2xf16>
  %x = bufferization.to_tensor %xin restrict : memref<1x64xf32> to tensor<1x64xf32>
  %y = moe.linear %x, %d scales %s {quant = #moe.quant<q8, group_size = 32>}
      : (tensor<1x64xf32>, tensor<16x64xi8>, tensor<16x2xf16>) -> tensor<1x16xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<1x16xf32>, memref<1x16xf32>) -> ()
  return
}

// -----

// Prefill: q4 projection -> gemm_mma_q4 with K = 64 (the data holds 32 bytes a row). With
// one group per K tile the codes are copied as stored, 16 bytes (a row's group) by cp.async
// into four raw stages (plain GEMM; SwiGLU: three), the f16 scales through registers into as many scale stages; tile
// t + 1 is dequantised from shared memory into one of two bf16 buffers while tile t is
// multiplied: the 8 bytes of an 8-element chunk at byte k % 32 % 16 of its row, shifted by
// k % 32 / 16 * 4 (low nibbles: the group's first half), masked, minus 8, times the scale,
// stored as bf16 for ldmatrix.
// CHECK-LABEL: func.func @q4_prefill
// CHECK: gpu.launch_func async [%{{.*}}] @moec_kernels::@gemm_mma_q4
// CHECK-SAME: %{{.*}} : memref<?x?x?xi8, strided<[?, ?, 1], offset: ?>>, %{{.*}} : memref<?x?x?xf16, strided<[?, ?, 1], offset: ?>>, %{{.*}} : memref<?x?xf32, strided<[?, 1], offset: ?>>, {{.*}}, %c64
// CHECK-LABEL: gpu.func @gemm_mma_q4(
// CHECK-SAME: workgroup(%[[SA:.*]] : memref<128x40xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[SB:.*]] : memref<128x40xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[RAW:.*]] : memref<256x16xi8, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[SC:.*]] : memref<256xf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64})
// CHECK: nvgpu.device_async_copy %arg1[{{.*}}], %[[RAW]][{{.*}}], 16, %{{.*}} {bypassL1}
// CHECK: nvvm.cp.async.commit.group
// CHECK: memref.store %{{.*}}, %[[SC]]
// CHECK: scf.for
// CHECK: nvvm.cp.async.wait.group 2
// CHECK-NEXT: gpu.barrier
// CHECK: nvgpu.device_async_copy %arg1[{{.*}}], %[[RAW]][{{.*}}], 16, %{{.*}} {bypassL1}
// CHECK: %[[B:.*]] = vector.load %[[RAW]][{{.*}}] {alignment = 8 : i64} : memref<256x16xi8, #gpu.address_space<workgroup>>, vector<8xi8>
// CHECK: %[[SH:.*]] = vector.broadcast %{{.*}} : i8 to vector<8xi8>
// CHECK: %[[HI:.*]] = arith.shrui %[[B]], %[[SH]] : vector<8xi8>
// CHECK: %[[NIB:.*]] = arith.andi %[[HI]], %{{.*}} : vector<8xi8>
// CHECK: %[[Q:.*]] = arith.subi %[[NIB]], %{{.*}} : vector<8xi8>
// CHECK: arith.sitofp %[[Q]] : vector<8xi8> to vector<8xf32>
// CHECK: arith.mulf
// CHECK: arith.truncf %{{.*}} : vector<8xf32> to vector<8xbf16>
// CHECK: vector.store %{{.*}}, %[[SB]]
// CHECK: nvgpu.ldmatrix %[[SB]]
// CHECK: nvvm.mma.sync
func.func @q4_prefill(%arena: memref<8192xi8>, %xin: memref<64x64xf32>, %n: index, %out: memref<64x16xf32>) {
  %c0 = arith.constant 0 : index
  %c1024 = arith.constant 1024 : index
  %dv = memref.view %arena[%c0][] : memref<8192xi8> to memref<16x32xi8>
  %sv = memref.view %arena[%c1024][] : memref<8192xi8> to memref<16x2xf16>
  %d = bufferization.to_tensor %dv restrict : memref<16x32xi8> to tensor<16x32xi8>
  %s = bufferization.to_tensor %sv restrict : memref<16x2xf16> to tensor<16x2xf16>
  %all = bufferization.to_tensor %xin restrict : memref<64x64xf32> to tensor<64x64xf32>
  %x = tensor.extract_slice %all[0, 0] [%n, 64] [1, 1] : tensor<64x64xf32> to tensor<?x64xf32>
  %y = moe.linear %x, %d scales %s {quant = #moe.quant<q4, group_size = 32>}
      : (tensor<?x64xf32>, tensor<16x32xi8>, tensor<16x2xf16>) -> tensor<?x16xf32>
  %o = bufferization.to_tensor %out restrict writable : memref<64x16xf32> to tensor<64x16xf32>
  %r = tensor.insert_slice %y into %o[0, 0] [%n, 16] [1, 1] : tensor<?x16xf32> into tensor<64x16xf32>
  bufferization.materialize_in_destination %r in restrict writable %out : (tensor<64x16xf32>, memref<64x16xf32>) -> ()
  return
}

// -----

// The routed experts in q4 (decode): the router keeps its float weights (gemv), the fused
// expert GEMVs take data + scales of w1 and w3 (gemv_swiglu_q4) and of w2 (gemv_q4), with
// the model dimensions K = 64 and K = 32, not the data's byte counts.
// CHECK-LABEL: func.func @q4_experts
// CHECK: @moec_kernels::@gemv blocks
// CHECK-SAME: memref<?x?x?xbf16
// CHECK: @moec_kernels::@top_k
// CHECK: @moec_kernels::@dispatch
// CHECK: @moec_kernels::@gemv_swiglu_q4 {{.*}} args(%{{.*}} : memref<?x?xf32, {{.*}}>, %{{.*}} : memref<?x?x?xi8, {{.*}}>, %{{.*}} : memref<?x?x?xf16, {{.*}}>, %{{.*}} : memref<?x?x?xi8, {{.*}}>, %{{.*}} : memref<?x?x?xf16, {{.*}}>, {{.*}}, %c32{{.*}} : index, %c64{{.*}} : index
// CHECK: @moec_kernels::@gemv_q4 {{.*}} args({{.*}}, %c64{{.*}} : index, %c32{{.*}} : index
// CHECK: @moec_kernels::@combine
// CHECK-LABEL: gpu.func @gemv_swiglu_q4(
// CHECK-SAME: %arg1: memref<?x?x?xi8, {{.*}}>, %arg2: memref<?x?x?xf16, {{.*}}>, %arg3: memref<?x?x?xi8, {{.*}}>, %arg4: memref<?x?x?xf16, {{.*}}>
func.func @q4_experts(%w: memref<65536xi8>, %xin: memref<1x64xf32>, %out: memref<1x64xf32>) {
  %c0 = arith.constant 0 : index
  %c1024 = arith.constant 1024 : index
  %c8192 = arith.constant 8192 : index
  %c9216 = arith.constant 9216 : index
  %c16384 = arith.constant 16384 : index
  %c17408 = arith.constant 17408 : index
  %c24576 = arith.constant 24576 : index
  %g = memref.view %w[%c0][] : memref<65536xi8> to memref<4x64xbf16>
  %w1 = memref.view %w[%c1024][] : memref<65536xi8> to memref<4x32x32xi8>
  %s1 = memref.view %w[%c8192][] : memref<65536xi8> to memref<4x32x2xf16>
  %w3 = memref.view %w[%c9216][] : memref<65536xi8> to memref<4x32x32xi8>
  %s3 = memref.view %w[%c16384][] : memref<65536xi8> to memref<4x32x2xf16>
  %w2 = memref.view %w[%c17408][] : memref<65536xi8> to memref<4x64x16xi8>
  %s2 = memref.view %w[%c24576][] : memref<65536xi8> to memref<4x64x1xf16>
  %gt = bufferization.to_tensor %g restrict : memref<4x64xbf16> to tensor<4x64xbf16>
  %w1t = bufferization.to_tensor %w1 restrict : memref<4x32x32xi8> to tensor<4x32x32xi8>
  %s1t = bufferization.to_tensor %s1 restrict : memref<4x32x2xf16> to tensor<4x32x2xf16>
  %w3t = bufferization.to_tensor %w3 restrict : memref<4x32x32xi8> to tensor<4x32x32xi8>
  %s3t = bufferization.to_tensor %s3 restrict : memref<4x32x2xf16> to tensor<4x32x2xf16>
  %w2t = bufferization.to_tensor %w2 restrict : memref<4x64x16xi8> to tensor<4x64x16xi8>
  %s2t = bufferization.to_tensor %s2 restrict : memref<4x64x1xf16> to tensor<4x64x1xf16>
  %x = bufferization.to_tensor %xin restrict : memref<1x64xf32> to tensor<1x64xf32>
  %logits = moe.router %x, %gt : (tensor<1x64xf32>, tensor<4x64xbf16>) -> tensor<1x4xf32>
  %weights, %ids = moe.top_k_gating %logits {k = 2 : i64} : (tensor<1x4xf32>) -> (tensor<1x2xf32>, tensor<1x2xi32>)
  %perm, %offsets = moe.dispatch %ids {num_experts = 4 : i64} : (tensor<1x2xi32>) -> (tensor<2xi32>, tensor<5xi32>)
  %h = moe.grouped_swiglu %x, %perm, %offsets, %w1t, %w3t scales %s1t, %s3t {k = 2 : i64, quant = #moe.quant<q4, group_size = 32>}
      : (tensor<1x64xf32>, tensor<2xi32>, tensor<5xi32>, tensor<4x32x32xi8>, tensor<4x32x32xi8>, tensor<4x32x2xf16>, tensor<4x32x2xf16>) -> tensor<2x32xf32>
  %y = moe.grouped_matmul_combine %h, %w2t, %offsets, %perm, %weights scales %s2t {quant = #moe.quant<q4, group_size = 32>}
      : (tensor<2x32xf32>, tensor<4x64x16xi8>, tensor<5xi32>, tensor<2xi32>, tensor<1x2xf32>, tensor<4x64x1xf16>) -> tensor<1x64xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<1x64xf32>, memref<1x64xf32>) -> ()
  return
}

// -----

// FP8 (f8e4m3, one f32 scale per row): gemv_f8e4m3 reads the bytes as stored, 16 a lane step,
// and widens them with integer ops (sign to bit 31, exponent and mantissa moved up and
// rebiased 7 -> 127, subnormals as mantissa * 2^-9); the row's scale (column 0) multiplies
// the warp's sum once, loaded by lane 0 only.
// CHECK-LABEL: func.func @f8_decode
// CHECK: @moec_kernels::@gemv_f8e4m3 {{.*}} args(%{{.*}} : memref<?x?xf32, {{.*}}>, %{{.*}} : memref<?x?x?xf8E4M3FN, {{.*}}>, %{{.*}} : memref<?x?x?xf32, {{.*}}>
// CHECK-LABEL: gpu.func @gemv_f8e4m3(
// CHECK: %[[RAW:.*]] = vector.load %arg1[{{.*}}] {alignment = 16 : i64} : memref<?x?x?xf8E4M3FN, {{.*}}>, vector<16xf8E4M3FN>
// CHECK: %[[BITS:.*]] = arith.bitcast %[[RAW]] : vector<16xf8E4M3FN> to vector<16xi8>
// CHECK: vector.bitcast %[[BITS]] : vector<16xi8> to vector<4xi32>
// CHECK: arith.extui %{{.*}} : vector<4xi8> to vector<4xi32>
// CHECK: gpu.shuffle xor
// CHECK: scf.if %{{.*}} -> (f32)
// CHECK: %[[S:.*]] = memref.load %arg2[%{{.*}}, %{{.*}}, %c0{{.*}}] : memref<?x?x?xf32, {{.*}}>
// CHECK: arith.mulf %{{.*}}, %{{.*}} : f32
func.func @f8_decode(%arena: memref<8192xi8>, %xin: memref<1x64xf32>, %out: memref<1x16xf32>) {
  %c0 = arith.constant 0 : index
  %c1024 = arith.constant 1024 : index
  %dv = memref.view %arena[%c0][] : memref<8192xi8> to memref<16x64xf8E4M3FN>
  %sv = memref.view %arena[%c1024][] : memref<8192xi8> to memref<16x1xf32>
  %d = bufferization.to_tensor %dv restrict : memref<16x64xf8E4M3FN> to tensor<16x64xf8E4M3FN>
  %s = bufferization.to_tensor %sv restrict : memref<16x1xf32> to tensor<16x1xf32>
  %x = bufferization.to_tensor %xin restrict : memref<1x64xf32> to tensor<1x64xf32>
  %y = moe.linear %x, %d scales %s {quant = #moe.quant<f8e4m3>}
      : (tensor<1x64xf32>, tensor<16x64xf8E4M3FN>, tensor<16x1xf32>) -> tensor<1x16xf32>
  bufferization.materialize_in_destination %y in restrict writable %out : (tensor<1x16xf32>, memref<1x16xf32>) -> ()
  return
}

// -----

func.func @marked_view(%arena: memref<8192xi8>, %x: tensor<?x64xf32>, %off: index) -> tensor<?x16xf32> {
  // expected-error @+1 {{is a weight marked for quantization (moe.quant); run moe-quantize-weights (the middle end) before the GPU lowering.}}
  %v = memref.view %arena[%off][] {moe.quant = #moe.quant<q4, group_size = 32>, moe.scale_offset = 512 : i64}
      : memref<8192xi8> to memref<16x64xbf16>
  %w = bufferization.to_tensor %v restrict : memref<16x64xbf16> to tensor<16x64xbf16>
  %y = moe.linear %x, %w : (tensor<?x64xf32>, tensor<16x64xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
