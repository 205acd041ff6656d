//===- MiddleEnd.cpp - moe-middle-end: the passes both targets share -------===//
//
// See moec/Passes/MiddleEnd.h.
//
//===----------------------------------------------------------------------===//

#include "moec/Passes/MiddleEnd.h"
#include "moec/Passes/Passes.h"

#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"

namespace mlir::moe {

void buildMoeMiddleEnd(OpPassManager &pm) {
  // Quantized weights made explicit (a float model passes unchanged), the routed form, then
  // the fused expert kernels.
  pm.addPass(createMoeQuantizeWeights());
  pm.addPass(createMoeDecomposeSparseBlock());
  pm.addPass(createMoeFuseExpertGemms());
}

void addMoeBufferize(OpPassManager &pm) {
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = true;
  bufferize.allowReturnAllocsFromLoops = true;
  bufferize.functionBoundaryTypeConversion = bufferization::LayoutMapOption::IdentityLayoutMap;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
}

void registerMoeMiddleEndPipeline() {
  PassPipelineRegistration<>(
      "moe-middle-end",
      "The target-neutral moe passes every back end runs first (quantize, decompose, fuse)",
      [](OpPassManager &pm) { buildMoeMiddleEnd(pm); });
}

} // namespace mlir::moe
