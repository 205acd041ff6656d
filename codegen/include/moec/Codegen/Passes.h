//===- Passes.h - moe code generation passes --------------------*- C++ -*-===//
//
// Declarations generated from Passes.td.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_CODEGEN_PASSES_H
#define MOEC_CODEGEN_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::moe {

/// Which quantized weights meet activations rounded to int8 per group of 32 (the
/// `int8-activations` option of moe-cpu-vectorize-quant-matmul and of moe-cpu-pipeline):
/// q4 only (the pipeline's default: for q4 the rounding costs nothing measurable and the
/// kernels run on integer dot products; for q8 it costs accuracy), q8 and q4, or neither.
enum class Int8Activations { Q4, All, None };

/// Whether the float GEMM widens bf16 weights in panel order once per panel into an f32
/// scratch panel (moe-cpu-vectorize-matmul's gemm-widen-panels) or in registers at every
/// step: by the CPU (the moe-cpu-pipeline default: widened on Zen 1, where measured
/// faster), always, or never.
enum class PanelWidening { Auto, Widen, InPlace };

#define GEN_PASS_DECL
#include "moec/Codegen/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moec/Codegen/Passes.h.inc"

} // namespace mlir::moe

#endif // MOEC_CODEGEN_PASSES_H
