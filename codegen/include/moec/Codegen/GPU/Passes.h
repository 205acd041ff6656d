//===- Passes.h - moe GPU code generation passes ----------------*- C++ -*-===//
#ifndef MOEC_CODEGEN_GPU_PASSES_H
#define MOEC_CODEGEN_GPU_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::moe::gpu {

#define GEN_PASS_DECL
#include "moec/Codegen/GPU/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moec/Codegen/GPU/Passes.h.inc"

} // namespace mlir::moe::gpu

#endif // MOEC_CODEGEN_GPU_PASSES_H
