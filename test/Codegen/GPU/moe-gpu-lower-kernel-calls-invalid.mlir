// RUN: moe-opt %s -split-input-file -moe-gpu-lower-kernel-calls -verify-diagnostics
// The launch lowering takes bufferized functions whose kernel calls the library has: a tensor
// left over, a kernel name it does not know, a call its kernel cannot serve, weights of two
// float types, or a copy the copy kernel cannot do is refused with a diagnostic instead of
// being miscompiled. (The moe ops without a GPU kernel are refused earlier, by
// moe-gpu-form-kernel-calls.)

func.func @too_many_experts(%ids: memref<1x2xi32>, %perm: memref<2xi32>, %off: memref<301xi32>, %inv: memref<2xi32>) {
  // expected-error @+1 {{'moe.kernel_call' op the GPU dispatch kernel supports at most 256 experts.}}
  moe.kernel_call "dispatch" ins(%ids : memref<1x2xi32>) outs(%perm, %off, %inv : memref<2xi32>, memref<301xi32>, memref<2xi32>) params {num_experts = 300 : i64}
  return
}

// -----

func.func @mixed_weights(%x: memref<1x64xf32>, %a: memref<16x64xbf16>, %b: memref<64x16xf16>, %y: memref<1x16xf32>, %z: memref<1x64xf32>) {
  moe.kernel_call "linear" ins(%x, %a : memref<1x64xf32>, memref<16x64xbf16>) outs(%y : memref<1x16xf32>)
  // expected-error @+1 {{'moe.kernel_call' op has 'f16' weights where an earlier call has 'bf16' ones; the GPU kernel library holds one weight type per model.}}
  moe.kernel_call "linear" ins(%y, %b : memref<1x16xf32>, memref<64x16xf16>) outs(%z : memref<1x64xf32>)
  return
}

// -----

func.func @unknown_kernel(%x: memref<1x64xf32>, %y: memref<1x64xf32>) {
  // expected-error @+1 {{'moe.kernel_call' op names a kernel that the GPU kernel library does not have.}}
  moe.kernel_call "softmax" ins(%x : memref<1x64xf32>) outs(%y : memref<1x64xf32>)
  return
}

// -----

func.func @not_bufferized(%x: memref<1x64xf32>, %w: memref<64xf32>, %y: memref<1x64xf32>) {
  moe.kernel_call "rms_norm" ins(%x, %w : memref<1x64xf32>, memref<64xf32>) outs(%y : memref<1x64xf32>) params {epsilon = 1.0e-05 : f64}
  // expected-error @+1 {{'bufferization.to_tensor' op works on tensors; the GPU launch lowering takes bufferized functions (run moe-gpu-form-kernel-calls and one-shot-bufferize first).}}
  %t = bufferization.to_tensor %y restrict : memref<1x64xf32> to tensor<1x64xf32>
  return
}

// -----

func.func @strided_copy(%x: memref<2x64xf32>, %w: memref<64xf32>, %y: memref<2x64xf32>, %cache: memref<2x128xf32>) {
  moe.kernel_call "rms_norm" ins(%x, %w : memref<2x64xf32>, memref<64xf32>) outs(%y : memref<2x64xf32>) params {epsilon = 1.0e-05 : f64}
  %half = memref.subview %cache[0, 0] [2, 64] [1, 1] : memref<2x128xf32> to memref<2x64xf32, strided<[128, 1]>>
  // expected-error @+1 {{'memref.copy' op copies a strided buffer; the GPU copy kernel takes contiguous ones.}}
  memref.copy %y, %half : memref<2x64xf32> to memref<2x64xf32, strided<[128, 1]>>
  return
}
