//===- CpuGemm.h - the packed GEMM for other weight formats -----*- C++ -*-===//
//
// moe-cpu-vectorize-matmul's packed-panel GEMM (see its file comment) with the weight
// panels produced by the caller: moe-cpu-vectorize-quant-matmul dequantises each panel of
// a quantized weight once per call into the same f32 scratch the bf16 path widens into,
// and the same microkernel does the rest.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_CPUGEMM_H
#define MOEC_CODEGEN_CPUGEMM_H

#include "mlir/IR/Builders.h"

#include <functional>

namespace mlir::moe {

/// Fills `panel` (memref<?x cols x f32>, K rows) with weight rows n0 .. n0 + cols, K in
/// lane-split order: panel[l * kw + j, r] = W[n0 + r, l + width * j], kw = K / width.
/// Called inside the GEMM's parallel loop over panels.
using GemmPanelPacker =
    std::function<void(OpBuilder &b, Location loc, Value panel, Value n0, Value kw)>;

/// Emits C[M, N] += A[M, K] · Wᵀ at `b`'s insertion point, W's panels from `pack`:
/// A f32 (or any float type) [M, K], C f32 [M, N], unit inner strides, N a multiple of
/// `cols`, K a multiple of `width` (the caller's to check), `cols` a multiple of `width`.
void buildPackedGemm(OpBuilder &b, Location loc, Value a, Value c, int64_t width,
                     int64_t rows, int64_t cols, GemmPanelPacker pack);

} // namespace mlir::moe

#endif // MOEC_CODEGEN_CPUGEMM_H
