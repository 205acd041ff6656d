//===- MiddleEnd.h - the dialect passes every target runs --------*- C++ -*-===//
//
// The moe dialect's target-neutral stages, written once and called by both back ends
// (buildCpuPipeline, buildGpuPipeline) so that the two cannot drift apart:
//
//   moe-quantize-weights -> moe-decompose-sparse-block -> moe-fuse-expert-gemms
//
// Afterwards a float model's MoE blocks are moe.router, moe.top_k_gating, moe.dispatch,
// moe.grouped_swiglu and moe.grouped_matmul_combine: the kernel boundaries of every target.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_PASSES_MIDDLEEND_H
#define MOEC_PASSES_MIDDLEEND_H

#include "mlir/Pass/PassManager.h"

namespace mlir::moe {

/// Adds the shared middle end to a module pass manager.
void buildMoeMiddleEnd(OpPassManager &pm);

/// Adds upstream one-shot-bufferize as both back ends run it after their kernel boundaries:
/// across function boundaries (entry points take memrefs with identity layouts), allocations
/// may be returned from loops (the layer loop's carried state).
void addMoeBufferize(OpPassManager &pm);

/// Registers `moe-middle-end` (for moe-opt).
void registerMoeMiddleEndPipeline();

} // namespace mlir::moe

#endif // MOEC_PASSES_MIDDLEEND_H
