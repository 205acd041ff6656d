//===- Passes.td - moe GPU code generation passes ----------*- tablegen -*-===//
//
// Passes of the GPU (nvptx) code generator. Flag = source file (codegen/gpu/<flag>.cpp) =
// lit test (test/Codegen/GPU/<flag>.mlir) = DEBUG_TYPE.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_CODEGEN_GPU_PASSES_TD
#define MOEC_CODEGEN_GPU_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoeGpuLowerToLaunches : Pass<"moe-gpu-lower-to-launches", "::mlir::ModuleOp"> {
  let summary = "Lower the moe forward graph to host code launching the GPU kernel library.";
  let description = [{
    Input: entry functions as mixtral-compile builds them (moe ops on tensors, views of the
    i8 arenas through memref.view + bufferization.to_tensor, one scf.for over layers,
    tensor reshapes / slices / insert_slice into the KV cache, linalg.add residuals,
    bufferization.materialize_in_destination). All arena and buffer arguments are device
    pointers.

    Output: the same functions on memrefs, where every computation is a `gpu.launch_func`
    of a kernel of `gpu.module @moec_kernels` (the library of codegen/gpu/Kernels.cpp,
    specialised for the model's weight type and head geometry). Launches are ordered on one
    stream: a `gpu.wait async` at entry, `async` launches depending on it, a `gpu.wait` before
    each return. Intermediates are `gpu.alloc`ed on that stream (stream-ordered pool in the
    runtime) and `gpu.dealloc`ed at the end of the block that allocated them; the layer loop
    carries the hidden state in one buffer updated in place.

    Kernel choice: T == 1 (static) uses the GEMV kernels (decode); otherwise projections and
    expert GEMMs use the mma.sync tensor-core kernels. `moe.sparse_block` becomes router
    (GEMV, f32) -> top_k -> dispatch (counts, prefix sum, permutation and its inverse) ->
    grouped gate/up GEMM + SwiGLU over expert-grouped rows (rows gathered through the
    permutation) -> grouped down GEMM -> combine (slot order); no routing data goes to the
    host. Attention is split over the key range (`attention-split` keys per split) on the
    decode path.

    Afterwards no tensor and no moe op remains.
  }];
  let options = [
    Option<"attentionSplit", "attention-split", "int64_t", "256",
           "keys per split of the decode attention (split-KV)">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::gpu::GPUDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::nvgpu::NVGPUDialect", "::mlir::NVVM::NVVMDialect",
    "::mlir::vector::VectorDialect", "::mlir::math::MathDialect", "::mlir::LLVM::LLVMDialect"
  ];
}

#endif // MOEC_CODEGEN_GPU_PASSES_TD
