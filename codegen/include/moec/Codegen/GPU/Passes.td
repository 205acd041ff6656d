//===- Passes.td - moe GPU code generation passes ----------*- tablegen -*-===//
//
// Passes of the GPU (nvptx) code generator. Flag = source file (codegen/gpu/<flag>.cpp) =
// lit test (test/Codegen/GPU/<flag>.mlir) = DEBUG_TYPE.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_CODEGEN_GPU_PASSES_TD
#define MOEC_CODEGEN_GPU_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoeGpuFormKernelCalls : Pass<"moe-gpu-form-kernel-calls", "::mlir::ModuleOp"> {
  let summary = "Turn the moe ops at the GPU kernel boundaries into destination-style moe.kernel_call.";
  let description = [{
    Input: the shared middle end's output (moe ops on tensors; the MoE block as the fused
    routed ops). Every moe op the GPU kernel library implements becomes one
    `moe.kernel_call` named after it, in destination style, so that upstream
    `one-shot-bufferize` can place every buffer the kernels write:

    - `ins`: the op's operands in order (tensors and index scalars), except a destination
      (paged_kv_write's pool, which is its output); grouped_matmul_combine also reads the
      inverse permutation that its dispatch wrote (the last input).
    - `outs`: a `tensor.empty` per result (the leading dynamic size from the op's row
      source), then the kernel's scratch: dispatch's inverse permutation [R] (i32),
      grouped_matmul_combine's rows before the combine [R, D] (f32), attention's per-split
      partial results [splits * T * H, HD + 2] (f32; `attention-split` keys per split on
      the decode path, where T is static, sized for the whole cache, so the buffer is
      static too; one split on the prefill path).
    - `params`: the op's attributes (k, epsilon, theta, scale, sliding_window, quant, ...);
      attention also gets `split`, the keys per split.

    ```mlir
    // before
    %y = moe.rms_norm %x, %w {epsilon = 1.0e-05 : f64}
        : (tensor<?x64xf32>, tensor<64xbf16>) -> tensor<?x64xf32>
    // after
    %t = tensor.dim %x, %c0 : tensor<?x64xf32>
    %e = tensor.empty(%t) : tensor<?x64xf32>
    %y = moe.kernel_call "rms_norm" ins(%x, %w : tensor<?x64xf32>, tensor<64xbf16>)
        outs(%e : tensor<?x64xf32>) params {epsilon = 1.0e-05 : f64} -> tensor<?x64xf32>
    ```

    A residual `linalg.add ins(%a, %b) outs(tensor.empty)` gets `%a` as its destination
    instead (the add reads only its inputs, so the result is the same): bufferization then
    updates the residual stream in place wherever `%a` is not read afterwards, and takes a
    fresh buffer (without a copy) where it is.

    Afterwards: no moe op but moe.kernel_call. An op without a GPU kernel (moe.sparse_block,
    the unfused routed ops) is refused with an error.

    In `moe-gpu-pipeline` this pass is followed by canonicalize, cse, `one-shot-bufferize`
    (function boundaries, `allow-return-allocs-from-loops`), `buffer-loop-hoisting`, the
    buffer deallocation pipeline and `moe-gpu-lower-kernel-calls`.
  }];
  let options = [
    Option<"attentionSplit", "attention-split", "int64_t", "256",
           "keys per split of the decode attention (split-KV)">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::tensor::TensorDialect"];
}

def MoeGpuLowerKernelCalls : Pass<"moe-gpu-lower-kernel-calls", "::mlir::ModuleOp"> {
  let summary = "Lower bufferized moe.kernel_calls to launches of the GPU kernel library.";
  let description = [{
    Input: entry functions after moe-gpu-form-kernel-calls and upstream bufferization
    (one-shot-bufferize, buffer-loop-hoisting, the buffer deallocation pipeline):
    `moe.kernel_call`s on memrefs, memref.alloc / dealloc of the temporaries, memref.copy
    (the KV cache update, the logits into the caller's buffer), linalg.add on memrefs (the
    residuals), views and reshapes of the i8 arenas, scf.for and scalar arithmetic. All arena
    and buffer arguments are device pointers. A tensor anywhere is refused.

    Output: the same functions where every computation is a `gpu.launch_func` of a kernel of
    `gpu.module @moec_kernels` (the library `buildKernelLibrary` builds from the typed kernel
    builders of codegen/gpu/kernels/, specialised for the model's weight type and head
    geometry). Launches are ordered on one stream: a `gpu.wait async` at entry, `async`
    launches depending on it, a `gpu.wait` before each return. The static `memref.alloc`s of
    the entry block (after buffer-loop-hoisting, every temporary of decode) become views of
    one arena at 256-byte aligned offsets: one `gpu.alloc` per call, sized at compile time,
    freed before the return (their `memref.dealloc`s are dropped). The other allocations
    (sized by the prefill's token count) become `gpu.alloc` / `gpu.dealloc` where they are.
    All are on the stream (stream-ordered pool in the runtime, the CUDA graph's arena under
    capture). memref.copy and linalg.add become the copy and add kernels over the flattened
    buffers.

    ```mlir
    // before
    %h = memref.alloc() : memref<1x64xf32>
    moe.kernel_call "rms_norm" ins(%x, %w : memref<1x64xf32>, memref<64xbf16>)
        outs(%h : memref<1x64xf32>) params {epsilon = 1.0e-05 : f64}
    memref.dealloc %h : memref<1x64xf32>
    // after
    %s = gpu.wait async
    %arena, %t0 = gpu.alloc async [%s] () : memref<512xi8>
    %h = memref.view %arena[%c0][] : memref<512xi8> to memref<1x64xf32>
    %t1 = gpu.launch_func async [%s] @moec_kernels::@rms_norm blocks in (%c1, %c1, %c1)
        threads in (%c256, %c1, %c1) args(%x : ..., %w : ..., %h : ..., %c64 : index, %eps : f32)
    %t2 = gpu.dealloc async [%s] %arena : memref<512xi8>
    gpu.wait [%t2]
    ```

    One rule per kernel name (codegen/gpu/launches/): T == 1 (static) uses the GEMV kernels
    (decode); otherwise projections and expert GEMMs use the mma.sync tensor-core kernels
    (wgmma on sm_90a). `router` -> GEMV (f32 logits), `top_k_gating` -> top_k, `dispatch` ->
    dispatch (counts, prefix sum, permutation and its inverse), `grouped_swiglu` -> grouped
    gate/up GEMM + SwiGLU over expert-grouped rows (rows gathered through the permutation),
    `grouped_matmul_combine` -> grouped down GEMM + combine (slot order, through dispatch's
    inverse permutation); no routing data goes to the host. Quantized weights (`quant` in
    the params: data + scales) launch the `_q8` / `_q4` / `_f8e4m3` variants of the GEMV and
    mma kernels, which dequantise in registers; a weight view still marked `moe.quant` is
    refused. Attention is split over the key range (the call's `split` keys per split) on the
    decode path.

    Afterwards no moe op, no memref.alloc / dealloc / copy and no linalg op remains.
  }];
  let options = [
    Option<"wgmma", "wgmma", "bool", "false",
           "build the warpgroup GEMMs (sm_90a) and launch them instead of mma.sync">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::gpu::GPUDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::nvgpu::NVGPUDialect", "::mlir::NVVM::NVVMDialect",
    "::mlir::vector::VectorDialect", "::mlir::math::MathDialect", "::mlir::LLVM::LLVMDialect"
  ];
}

def MoeGpuExpandKernelMemrefs
    : Pass<"moe-gpu-expand-kernel-memrefs", "::mlir::ModuleOp"> {
  let summary = "Pass every memref kernel argument as a base pointer and its dynamic metadata.";
  let description = [{
    The launch ABI between host and kernels, made explicit before either side is lowered.
    Host functions use the bare-pointer calling convention (the runtime's C ABI), and with it
    `gpu-to-llvm` promotes a `gpu.launch_func` memref operand to its aligned pointer alone,
    while `convert-gpu-to-nvvm` by default expects a whole descriptor per memref parameter:
    the two disagree on the number of kernel parameters, and a bare aligned pointer would also
    drop a view's offset.

    This pass rewrites each kernel of the module's `gpu.module`s so that a memref parameter
    `memref<?x?xT, strided<[?, 1], offset: ?>>` becomes a 0-d `memref<T>` (its base buffer,
    passed as one pointer under the bare-pointer convention on both sides) followed by one
    `index` per dynamic offset, size and stride; the kernel rebuilds the view at entry with
    `memref.reinterpret_cast`. Each `gpu.launch_func` passes
    `memref.extract_strided_metadata` of its operand in the same order.

    ```mlir
    // before
    gpu.launch_func @k::@f blocks in (%g, %c1, %c1) threads in (%c256, %c1, %c1)
        args(%x : memref<?x?xf32, strided<[?, 1], offset: ?>>)
    gpu.func @f(%x: memref<?x?xf32, strided<[?, 1], offset: ?>>) kernel
    // after
    %base, %off, %sizes:2, %strides:2 = memref.extract_strided_metadata %x : ...
    gpu.launch_func @k::@f ... args(%base : memref<f32>, %off : index, %sizes#0 : index,
                                    %sizes#1 : index, %strides#0 : index)
    gpu.func @f(%b: memref<f32>, %o: index, %s0: index, %s1: index, %t0: index) kernel {
      %x = memref.reinterpret_cast %b to offset: [%o], sizes: [%s0, %s1], strides: [%t0, 1]
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect", "::mlir::memref::MemRefDialect"];
}

#endif // MOEC_CODEGEN_GPU_PASSES_TD
