//===- Kernels.h - the GPU kernel library of moe-gpu-lower-kernel-calls ---*- C++ -*-===//
//
// Every device kernel of the GPU target, built once as IR (gpu.func with memref, scf, arith,
// math, vector, nvgpu and nvvm ops; codegen/gpu/kernels/) and specialised per model: the
// weight storage type and the attention head geometry come from KernelConfig, tile sizes from
// Tiles.h. moe-gpu-lower-kernel-calls builds the library into the host module and launches its
// kernels; the NVVM pipeline turns them into PTX.
//
// All memref parameters are fully dynamic with a unit innermost stride, so one kernel serves
// arena views, subviews and fresh allocations alike.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_GPU_KERNELS_H
#define MOEC_CODEGEN_GPU_KERNELS_H

#include "Tiles.h"
#include "moec/Dialect/Moe/MoeAttrs.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Types.h"

#include <cstdint>

namespace mlir::gpu {
class GPUModuleOp;
} // namespace mlir::gpu

namespace mlir::moe::gpu {

/// What the library is specialised for.
struct KernelConfig {
  Type weightType;        // bf16, f16 or f32: storage type of every float weight
  /// The quantized formats of the model's weights (#moe.quant): each adds its own GEMV and
  /// GEMM variants (Gemv.cpp, GemmMma.cpp), which dequantise in registers.
  SmallVector<QuantAttr> quant;
  int64_t headDim = 128;  // HD
  int64_t groupSize = 4;  // G = query heads per KV head
  /// Also build the warpgroup GEMMs (gemm_wgmma*, kernels/GemmWgmma.cpp): the chip is
  /// sm_90a. The launches take them over gemm_mma* wherever the library has them.
  bool wgmma = false;
};

/// The library's name of a GEMV/GEMM kernel (`base`: gemv, gemv_swiglu, gemm_mma,
/// gemm_mma_swiglu) for weights stored as `quant`: `base` for float weights, else
/// base + "_q8" / "_q4" / "_f8e4m3".
std::string weightKernelName(StringRef base, QuantAttr quant);

/// Builds `gpu.module @moec_kernels` with every kernel at the builder's insertion point (in
/// the host module) and returns it; null (after an error at `loc`) if it cannot be built.
::mlir::gpu::GPUModuleOp buildKernelLibrary(OpBuilder &builder, Location loc,
                                            const KernelConfig &config);

} // namespace mlir::moe::gpu

#endif // MOEC_CODEGEN_GPU_KERNELS_H
