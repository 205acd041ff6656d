//===- Passes.h - moe dialect passes ----------------------------*- C++ -*-===//
//
// Declarations generated from Passes.td, plus registration of every pass and named pipeline.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_PASSES_PASSES_H
#define MOEC_PASSES_PASSES_H

#include "mlir/Pass/Pass.h"
#include "moec/Dialect/Moe/MoeDialect.h"

namespace mlir::moe {

#define GEN_PASS_DECL
#include "moec/Passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moec/Passes/Passes.h.inc"

} // namespace mlir::moe

#endif // MOEC_PASSES_PASSES_H
