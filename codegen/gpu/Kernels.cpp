//===- Kernels.cpp - the GPU kernel library, built as IR ------------------===//
//
// buildKernelLibrary creates `gpu.module @moec_kernels` and lets each kernel family build its
// gpu.funcs into it with typed builders (codegen/gpu/kernels/, one file per family; shared
// helpers in KernelBuilder.h, index formulas in IndexMath.h, tile geometry in Tiles.h).
// The library is specialised per model by KernelConfig: the weight element type (an
// mlir::Type) and the attention head geometry.
//
// Kernels (grid / block, what one block does):
//   embedding, rms_norm, rope, rope_at,     kernels/Elementwise.cpp
//   add, copy
//   top_k, dispatch, combine                kernels/Routing.cpp
//   gemv, gemv_swiglu                       kernels/Gemv.cpp     (decode)
//   gemm_mma, gemm_mma_swiglu               kernels/GemmMma.cpp  (prefill, grouped experts)
//   gemm_wgmma, gemm_wgmma_swiglu           kernels/GemmWgmma.cpp (the same, sm_90a only)
//   ..._q8, _q4, _f8e4m3 of those four      quantized weights, dequantised in registers
//                                           (kernels/Weights.cpp), for each format in use
//   attention, attention_combine,           kernels/Attention.cpp
//   paged_attention
//   paged_kv_write, gather_rows             kernels/Step.cpp     (the batched step)
// Each file's header gives the grid, the block and the algorithm.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"
#include "kernels/KernelBuilder.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::moe::gpu {

std::string weightKernelName(StringRef base, QuantAttr quant) {
  if (!quant)
    return base.str();
  return (base + "_" + stringifyQuantFormat(quant.getFormat())).str();
}

::mlir::gpu::GPUModuleOp buildKernelLibrary(OpBuilder &builder, Location loc,
                                            const KernelConfig &config) {
  kernels::KernelBuilder b(loc, builder);
  auto library = ::mlir::gpu::GPUModuleOp::create(b, "moec_kernels");
  b.setInsertionPointToStart(library.getBody());
  kernels::buildElementwiseKernels(b, config);
  kernels::buildRoutingKernels(b);
  kernels::buildGemvKernels(b, config);
  kernels::buildGemmMmaKernels(b, config);
  if (config.wgmma)
    kernels::buildGemmWgmmaKernels(b, config);
  kernels::buildAttentionKernels(b, config);
  kernels::buildStepKernels(b);
  return library;
}

} // namespace mlir::moe::gpu
