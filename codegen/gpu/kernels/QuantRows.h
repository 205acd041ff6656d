//===- QuantRows.h - quantized weight rows as the decode GEMVs read them --*- C++ -*-===//
//
// The GEMVs' quantized path (Gemv.cpp) reads a lane's share of a weight row in 16-byte loads
// and dequantises it 4 codes at a time (Weights.cpp); the element-wise path for other shapes
// is loadWeightsF32 (KernelBuilder.h). The lane geometry is IndexMath.h's kGemvQuant*.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_GPU_KERNELS_QUANTROWS_H
#define MOEC_CODEGEN_GPU_KERNELS_QUANTROWS_H

#include "KernelBuilder.h"

namespace mlir::moe::gpu::kernels {

/// Elements a lane reads per step of a quantized row (k a multiple of it): a whole group of
/// q8 (two 16-byte loads) or q4 (one), so that each group's scale is loaded once; 16 for
/// f8e4m3 (one load; the row's scale is applied once, after the dot product). 0 when the
/// group size is not kGemvQuantGroup (such formats take loadWeightsF32's path).
int64_t quantLaneElements(QuantAttr quant);

/// The stored bytes of one lane step as i32 words (4 per 16-byte load) and, for q8/q4, the
/// group's scale as f32.
struct QuantRow {
  SmallVector<Value, 2> data; // vector<4xi32> per 16-byte load
  Value scale;                // f32; null for f8e4m3
};
/// The lane step of row n of group g that starts at element k.
QuantRow loadQuantRow(KernelBuilder &b, const WeightOperand &w, Value g, Value n, Value k);
/// Elements [4p, 4p + 4) of a QuantRow as vector<4xf32> codes, not yet scaled (exact).
Value dequantPiece(KernelBuilder &b, const WeightOperand &w, const QuantRow &row, int64_t p);

} // namespace mlir::moe::gpu::kernels

#endif // MOEC_CODEGEN_GPU_KERNELS_QUANTROWS_H
